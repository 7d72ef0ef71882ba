/* federated-mean in C: the partial step at each station and the central
 * step. Same input and output as the Rust version
 * (algorithms/federated-mean). */

#include <stddef.h>

#include "sandlet.h"

static int partial(sandlet_run *run, const char *dataset, const char *column) {
    const char *c = sandlet_quote(run, column);
    sandlet_table *t = sandlet_queryf(run, "SELECT SUM(%s) AS s, COUNT(%s) AS n FROM %s", c, c,
                                      sandlet_quote(run, dataset));
    if (!t)
        return SANDLET_FAILED;
    const sandlet_value *sum = sandlet_cell(t, 0, 0), *count = sandlet_cell(t, 0, 1);
    double s = 0;
    if (!sum || (sum->kind != SANDLET_NULL && !sandlet_value_number(sum, &s)))
        return sandlet_fail(run, "unexpected sum");
    if (!count || count->kind != SANDLET_INT)
        return sandlet_fail(run, "unexpected count");
    sandlet_begin_object(run);
    sandlet_key(run, "sum");
    sandlet_write_double(run, s);
    sandlet_key(run, "count");
    sandlet_write_int(run, count->integer);
    sandlet_end_object(run);
    return SANDLET_OK;
}

static int combine(sandlet_run *run, const sandlet_json *partials) {
    double sum = 0;
    int64_t count = 0;
    for (size_t i = 0; i < partials->length; i++) {
        const sandlet_json *p = &partials->items[i];
        double s;
        const sandlet_json *n = sandlet_json_get(p, "count");
        if (!sandlet_json_number(sandlet_json_get(p, "sum"), &s) || !n || n->type != SANDLET_JSON_NUMBER ||
            !n->is_integer)
            return sandlet_fail(run, "invalid input: partial %zu is not {\"sum\": NUMBER, \"count\": INTEGER}", i);
        sum += s;
        count += n->integer;
    }
    if (count == 0)
        return sandlet_fail(run, "no values at any station: the mean is undefined");
    sandlet_begin_object(run);
    sandlet_key(run, "mean");
    sandlet_write_double(run, sum / (double)count);
    sandlet_key(run, "sum");
    sandlet_write_double(run, sum);
    sandlet_key(run, "count");
    sandlet_write_int(run, count);
    sandlet_end_object(run);
    return SANDLET_OK;
}

int sandlet_algorithm(sandlet_run *run, const sandlet_json *input) {
    static const char *const partial_keys[] = {"dataset", "column", NULL};
    static const char *const combine_keys[] = {"combine", NULL};
    const char *dataset = sandlet_json_string(sandlet_json_get(input, "dataset"));
    const char *column = sandlet_json_string(sandlet_json_get(input, "column"));
    const sandlet_json *partials = sandlet_json_get(input, "combine");
    if (dataset && column && sandlet_json_only_keys(input, partial_keys))
        return partial(run, dataset, column);
    if (partials && partials->type == SANDLET_JSON_ARRAY && sandlet_json_only_keys(input, combine_keys))
        return combine(run, partials);
    return sandlet_fail(run, "invalid input: expected {\"dataset\", \"column\"} or {\"combine\": [...]}");
}
