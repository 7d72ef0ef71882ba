/* column-stats in C: count, mean and sample variance of one numeric column,
 * over the whole dataset or per group. Same input and output as the Rust
 * version (algorithms/column-stats). The numbers come from one aggregate
 * query; the algorithm never sees a row. */

#include <stddef.h>

#include "sandlet.h"

static int invalid_input(sandlet_run *run) {
    return sandlet_fail(run, "invalid input: expected {\"dataset\": NAME, \"column\": NAME} "
                             "and optionally \"group_by\"");
}

/* count, mean and variance from cells first, first + 1 and first + 2. */
static int write_stats(sandlet_run *run, const sandlet_table *table, size_t row, size_t first) {
    const sandlet_value *count = sandlet_cell(table, row, first);
    if (!count || count->kind != SANDLET_INT)
        return sandlet_fail(run, "unexpected count");
    sandlet_key(run, "count");
    sandlet_write_int(run, count->integer);
    sandlet_key(run, "mean");
    sandlet_write_number_or_null(run, sandlet_cell(table, row, first + 1));
    sandlet_key(run, "variance");
    sandlet_write_number_or_null(run, sandlet_cell(table, row, first + 2));
    return SANDLET_OK;
}

int sandlet_algorithm(sandlet_run *run, const sandlet_json *input) {
    static const char *const keys[] = {"dataset", "column", "group_by", NULL};
    const char *dataset = sandlet_json_string(sandlet_json_get(input, "dataset"));
    const char *column = sandlet_json_string(sandlet_json_get(input, "column"));
    const sandlet_json *group = sandlet_json_get(input, "group_by");
    const char *group_by = sandlet_json_string(group);
    if (!sandlet_json_only_keys(input, keys) || !dataset || !column ||
        (group && group->type != SANDLET_JSON_NULL && !group_by))
        return invalid_input(run);

    const char *c = sandlet_quote(run, column);
    const char *from = sandlet_quote(run, dataset);
    sandlet_begin_object(run);
    sandlet_key(run, "dataset");
    sandlet_write_string(run, dataset);
    sandlet_key(run, "column");
    sandlet_write_string(run, column);
    if (!group_by) {
        sandlet_table *t =
            sandlet_queryf(run, "SELECT COUNT(%s), AVG(%s), VAR_SAMP(%s) FROM %s", c, c, c, from);
        if (!t)
            return SANDLET_FAILED;
        if (t->rows == 0)
            return sandlet_fail(run, "the query returned no row");
        if (write_stats(run, t, 0, 0) != SANDLET_OK)
            return SANDLET_FAILED;
    } else {
        const char *key = sandlet_quote(run, group_by);
        sandlet_table *t = sandlet_queryf(
            run, "SELECT %s, COUNT(%s), AVG(%s), VAR_SAMP(%s) FROM %s GROUP BY %s ORDER BY %s", key,
            c, c, c, from, key, key);
        if (!t)
            return SANDLET_FAILED;
        sandlet_key(run, "group_by");
        sandlet_write_string(run, group_by);
        sandlet_key(run, "groups");
        sandlet_begin_array(run);
        for (size_t row = 0; row < t->rows; row++) {
            sandlet_begin_object(run);
            sandlet_key(run, "key");
            sandlet_write_value(run, sandlet_cell(t, row, 0));
            if (write_stats(run, t, row, 1) != SANDLET_OK)
                return SANDLET_FAILED;
            sandlet_end_object(run);
        }
        sandlet_end_array(run);
    }
    sandlet_end_object(run);
    return SANDLET_OK;
}
