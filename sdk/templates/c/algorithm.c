/* {{name}}: a sandlet algorithm.
 *
 * Input: {"dataset": "example", "column": "value"}.
 * Output: {"dataset": ..., "column": ..., "count": N, "mean": M} from one
 * aggregate query, which the data station answers under its disclosure
 * policy (a refused query returns NULL with the run's error set:
 * "not-granted: ...", "denied: ..."). See sdk/sandlet.h in the build
 * directory, or sandlet's sdk/c/sandlet.h. */

#include <stddef.h>

#include "sandlet.h"

int sandlet_algorithm(sandlet_run *run, const sandlet_json *input) {
    static const char *const keys[] = {"dataset", "column", NULL};
    const char *dataset = sandlet_json_string(sandlet_json_get(input, "dataset"));
    const char *column = sandlet_json_string(sandlet_json_get(input, "column"));
    if (!sandlet_json_only_keys(input, keys) || !dataset || !column)
        return sandlet_fail(run, "invalid input: expected {\"dataset\": NAME, \"column\": NAME}");

    const char *c = sandlet_quote(run, column);
    sandlet_table *t =
        sandlet_queryf(run, "SELECT COUNT(%s), AVG(%s) FROM %s", c, c, sandlet_quote(run, dataset));
    if (!t)
        return SANDLET_FAILED;
    const sandlet_value *count = sandlet_cell(t, 0, 0);
    if (!count || count->kind != SANDLET_INT)
        return sandlet_fail(run, "the query returned no count");

    sandlet_begin_object(run);
    sandlet_key(run, "dataset");
    sandlet_write_string(run, dataset);
    sandlet_key(run, "column");
    sandlet_write_string(run, column);
    sandlet_key(run, "count");
    sandlet_write_int(run, count->integer);
    sandlet_key(run, "mean");
    sandlet_write_number_or_null(run, sandlet_cell(t, 0, 1));
    sandlet_end_object(run);
    return SANDLET_OK;
}
