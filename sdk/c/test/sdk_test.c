/* The C SDK's reader, writer and entry, tested natively (under
 * AddressSanitizer and UBSan when the test builds it so) against a stubbed
 * host: the component's export is called with hostile and valid inputs,
 * as the host would call it, and every answer is checked exactly.
 *
 * The algorithm here echoes its input through the writer, or misbehaves
 * on request ({"misuse": ...}) or queries the stub ({"query": ...}).
 * Prints one line per failed case and exits 1 if any failed. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "algorithm.h"
#include "sandlet.h"

/* ---- the stubbed host ---------------------------------------------------- */

void algorithm_string_set(algorithm_string_t *ret, const char *s) {
    ret->ptr = (uint8_t *)s;
    ret->len = strlen(s);
}

void algorithm_string_free(algorithm_string_t *s) {
    if (s->len > 0)
        free(s->ptr);
    s->ptr = NULL;
    s->len = 0;
}

static void dup_string(algorithm_string_t *out, const char *s) {
    out->len = strlen(s);
    out->ptr = malloc(out->len + 1);
    memcpy(out->ptr, s, out->len + 1);
}

static int tables_freed, errors_freed;

void sandlet_algorithm_data_table_free(sandlet_algorithm_data_table_t *t) {
    for (size_t c = 0; c < t->columns.len; c++)
        algorithm_string_free(&t->columns.ptr[c]);
    free(t->columns.ptr);
    for (size_t r = 0; r < t->rows.len; r++) {
        for (size_t c = 0; c < t->rows.ptr[r].len; c++)
            if (t->rows.ptr[r].ptr[c].tag == SANDLET_ALGORITHM_DATA_VALUE_TEXT)
                algorithm_string_free(&t->rows.ptr[r].ptr[c].val.text);
        free(t->rows.ptr[r].ptr);
    }
    free(t->rows.ptr);
    tables_freed++;
}

void sandlet_algorithm_data_error_free(sandlet_algorithm_data_error_t *e) {
    algorithm_string_free(&e->val.denied);
    errors_freed++;
}

/* "deny" is refused by policy, "hidden" is not granted; anything else is
 * answered with one row holding every kind of value. */
bool sandlet_algorithm_data_query(algorithm_string_t *sql, sandlet_algorithm_data_table_t *ret,
                                  sandlet_algorithm_data_error_t *err) {
    if (sql->len == 4 && memcmp(sql->ptr, "deny", 4) == 0) {
        err->tag = SANDLET_ALGORITHM_DATA_ERROR_DENIED;
        dup_string(&err->val.denied, "minGroupSize: too few");
        return false;
    }
    if (sql->len == 6 && memcmp(sql->ptr, "hidden", 6) == 0) {
        err->tag = SANDLET_ALGORITHM_DATA_ERROR_NOT_GRANTED;
        dup_string(&err->val.not_granted, "no such column");
        return false;
    }
    static const char *names[] = {"n", "b", "i", "f", "t"};
    ret->columns.len = 5;
    ret->columns.ptr = calloc(5, sizeof *ret->columns.ptr);
    for (int c = 0; c < 5; c++)
        dup_string(&ret->columns.ptr[c], names[c]);
    ret->rows.len = 1;
    ret->rows.ptr = calloc(1, sizeof *ret->rows.ptr);
    ret->rows.ptr[0].len = 5;
    sandlet_algorithm_data_value_t *v = calloc(5, sizeof *v);
    ret->rows.ptr[0].ptr = v;
    v[0].tag = SANDLET_ALGORITHM_DATA_VALUE_NULL;
    v[1].tag = SANDLET_ALGORITHM_DATA_VALUE_BOOLEAN;
    v[1].val.boolean = true;
    v[2].tag = SANDLET_ALGORITHM_DATA_VALUE_INT;
    v[2].val.int_ = -9223372036854775807LL - 1;
    v[3].tag = SANDLET_ALGORITHM_DATA_VALUE_FLOAT;
    v[3].val.float_ = 0.1 + 0.2;
    v[4].tag = SANDLET_ALGORITHM_DATA_VALUE_TEXT;
    dup_string(&v[4].val.text, "quote \" backslash \\ tab \t bell \a é");
    return true;
}

void sandlet_algorithm_data_datasets(sandlet_algorithm_data_list_dataset_info_t *ret) {
    ret->ptr = NULL;
    ret->len = 0;
}

void sandlet_algorithm_data_list_dataset_info_free(sandlet_algorithm_data_list_dataset_info_t *l) {
    free(l->ptr);
}

/* ---- the algorithm --------------------------------------------------------- */

static void echo(sandlet_run *run, const sandlet_json *v) {
    switch (v->type) {
    case SANDLET_JSON_NULL: sandlet_write_null(run); break;
    case SANDLET_JSON_BOOL: sandlet_write_bool(run, v->boolean); break;
    case SANDLET_JSON_NUMBER:
        if (v->is_integer)
            sandlet_write_int(run, v->integer);
        else
            sandlet_write_double(run, v->number);
        break;
    case SANDLET_JSON_STRING: sandlet_write_string(run, v->string); break;
    case SANDLET_JSON_ARRAY:
        sandlet_begin_array(run);
        for (size_t i = 0; i < v->length; i++)
            echo(run, &v->items[i]);
        sandlet_end_array(run);
        break;
    case SANDLET_JSON_OBJECT:
        sandlet_begin_object(run);
        for (size_t i = 0; i < v->length; i++) {
            sandlet_key(run, v->items[i].key);
            echo(run, &v->items[i]);
        }
        sandlet_end_object(run);
        break;
    }
}

int sandlet_algorithm(sandlet_run *run, const sandlet_json *input) {
    const char *misuse = sandlet_json_string(sandlet_json_get(input, "misuse"));
    const char *query = sandlet_json_string(sandlet_json_get(input, "query"));
    if (misuse && strcmp(misuse, "open") == 0) {
        sandlet_begin_object(run);
        sandlet_key(run, "a");
        return SANDLET_OK;
    }
    if (misuse && strcmp(misuse, "nothing") == 0)
        return SANDLET_OK;
    if (misuse && strcmp(misuse, "two") == 0) {
        sandlet_write_int(run, 1);
        sandlet_write_int(run, 2);
        return SANDLET_OK;
    }
    if (misuse && strcmp(misuse, "silent") == 0)
        return SANDLET_FAILED;
    if (misuse && strcmp(misuse, "fail") == 0)
        return sandlet_fail(run, "bad %s %d", "thing", 7);
    if (query) {
        sandlet_table *t = sandlet_query(run, query);
        if (!t)
            return sandlet_error(run) == SANDLET_DENIED ? SANDLET_FAILED
                                                        : sandlet_fail(run, "kind %d: %s", sandlet_error(run),
                                                                       sandlet_error_message(run));
        sandlet_begin_object(run);
        for (size_t c = 0; c < t->columns; c++) {
            sandlet_key(run, t->names[c]);
            sandlet_write_value(run, sandlet_cell(t, 0, c));
        }
        sandlet_key(run, "quoted");
        sandlet_write_string(run, sandlet_quote(run, "a \"b\" c"));
        sandlet_key(run, "outside");
        sandlet_write_value(run, sandlet_cell(t, 1, 0));
        sandlet_end_object(run);
        return SANDLET_OK;
    }
    echo(run, input);
    return SANDLET_OK;
}

/* ---- the cases --------------------------------------------------------------- */

static int failures;

/* Calls the export with `input` (length `length`); `ok` says which side
 * `expected` is on; `prefix` compares only the start. */
static void check(const char *input, size_t length, bool ok, const char *expected, bool prefix) {
    algorithm_string_t in, ret = {0}, err = {0};
    /* As the canonical ABI does, an empty string has no allocation. */
    static uint8_t empty;
    in.len = length;
    in.ptr = length ? malloc(length) : &empty;
    memcpy(in.ptr, input, length);
    bool got_ok = exports_algorithm_run(&in, &ret, &err);
    algorithm_string_t *got = got_ok ? &ret : &err;
    size_t n = strlen(expected);
    bool same = got_ok == ok && (prefix ? got->len >= n : got->len == n) &&
                memcmp(got->ptr, expected, n) == 0;
    if (!same) {
        failures++;
        printf("FAIL %.60s\n  expected %s %s\n  got      %s %.*s\n", input, ok ? "ok" : "err", expected,
               got_ok ? "ok" : "err", (int)got->len, (const char *)got->ptr);
    }
    algorithm_string_free(&ret);
    algorithm_string_free(&err);
}

static void valid(const char *input, const char *output) { check(input, strlen(input), true, output, false); }
static void refused(const char *input, const char *error) { check(input, strlen(input), false, error, true); }

int main(void) {
    /* Round trips, escapes, numbers in their shortest exact form. */
    valid("{}", "{}");
    valid(" [ ] ", "[]");
    valid("{\"a\":[1,2.5,-0,1e3,true,false,null,{},[]],\"b\":{\"c\":\"d\"}}",
          "{\"a\":[1,2.5,0,1000,true,false,null,{},[]],\"b\":{\"c\":\"d\"}}");
    valid("[0.1, 0.30000000000000004, 310.0, 1e20, -1.5e-7, 123456789012345678]",
          "[0.1,0.30000000000000004,310,1e+20,-1.5e-07,123456789012345678]");
    valid("[9223372036854775807, -9223372036854775808, 9223372036854775808]",
          "[9223372036854775807,-9223372036854775808,9.223372036854776e+18]");
    valid("[\"\\u00e9\\ud83d\\ude00\\n\\t\\\"\\\\\\/\\b\\f\\r\"]", "[\"é😀\\n\\t\\\"\\\\/\\u0008\\u000c\\r\"]");
    valid("[\"\\u0001\"]", "[\"\\u0001\"]");
    /* Nesting up to the limit, and one past it. */
    char deep[2 * 130 + 1];
    memset(deep, '[', 129);
    memset(deep + 129, ']', 129);
    deep[258] = '\0';
    check(deep, 258, true, "[[[", true);
    memset(deep, '[', 130);
    memset(deep + 130, ']', 130);
    deep[260] = '\0';
    refused(deep, "invalid input: not JSON: expected nesting no deeper than 128 at byte 129");
    /* Every way the reader refuses. */
    refused("", "invalid input: not JSON: expected a value at byte 0");
    refused("   ", "invalid input: not JSON: expected a value at byte 3");
    refused("{} x", "invalid input: not JSON: expected the end of the input at byte 3");
    refused("{\"a\":1,\"a\":2}", "invalid input: not JSON: expected no duplicate member name");
    refused("{\"a\" 1}", "invalid input: not JSON: expected ':' after a member name");
    refused("{a:1}", "invalid input: not JSON: expected a member name in double quotes");
    refused("{\"a\":1,}", "invalid input: not JSON: expected a member name in double quotes");
    refused("[1,]", "invalid input: not JSON: expected a value");
    refused("[1 2]", "invalid input: not JSON: expected ',' or ']'");
    refused("\"abc", "invalid input: not JSON: expected the end of a string");
    refused("\"a\tb\"", "invalid input: not JSON: expected no control character in a string");
    refused("\"\\x\"", "invalid input: not JSON: expected a valid escape");
    refused("\"\\u12\"", "invalid input: not JSON: expected four hex digits");
    refused("\"\\ud800\"", "invalid input: not JSON: expected the second half of a surrogate pair");
    refused("\"\\ud800\\u0041\"", "invalid input: not JSON: expected the second half of a surrogate pair");
    refused("\"\\udc00\"", "invalid input: not JSON: expected no lone surrogate");
    refused("[01]", "invalid input: not JSON: expected ',' or ']'");
    refused("[1.]", "invalid input: not JSON: expected a digit after the decimal point");
    refused("[.5]", "invalid input: not JSON: expected a value");
    refused("[1e]", "invalid input: not JSON: expected a digit in the exponent");
    refused("[-]", "invalid input: not JSON: expected a value");
    refused("[1e999]", "invalid input: not JSON: expected a number a double can hold");
    refused("[tru]", "invalid input: not JSON: expected a value");
    refused("nul", "invalid input: not JSON: expected a value");
    /* A NUL inside the input is not JSON whitespace. */
    check("{}\0", 3, false, "invalid input: not JSON: expected the end of the input at byte 2", false);
    /* A large input: many members, long strings. */
    size_t big = 1 << 20;
    char *large = malloc(big + 16);
    strcpy(large, "[\"");
    memset(large + 2, 'x', big);
    strcpy(large + 2 + big, "\"]");
    check(large, big + 4, true, "[\"xxxx", true);
    free(large);

    /* The writer's misuse is the run's error, not broken JSON. */
    refused("{\"misuse\":\"open\"}", "the result is not JSON");
    refused("{\"misuse\":\"two\"}", "the result is not JSON");
    refused("{\"misuse\":\"nothing\"}", "the algorithm wrote no result");
    refused("{\"misuse\":\"silent\"}", "the algorithm failed (returned -1 with no error set)");
    refused("{\"misuse\":\"fail\"}", "bad thing 7");

    /* Queries: values copied out, refusals as "kind: detail" and typed. */
    valid("{\"query\":\"SELECT\"}",
          "{\"n\":null,\"b\":true,\"i\":-9223372036854775808,\"f\":0.30000000000000004,"
          "\"t\":\"quote \\\" backslash \\\\ tab \\t bell \\u0007 é\",\"quoted\":\"\\\"a \\\"\\\"b\\\"\\\" c\\\"\","
          "\"outside\":null}");
    refused("{\"query\":\"deny\"}", "denied: minGroupSize: too few");
    refused("{\"query\":\"hidden\"}", "kind 1: not-granted: no such column");
    if (tables_freed != 1 || errors_freed != 2) {
        failures++;
        printf("FAIL host memory: %d tables and %d errors freed (expected 1 and 2)\n", tables_freed, errors_freed);
    }

    if (failures) {
        printf("%d failed\n", failures);
        return 1;
    }
    printf("all passed\n");
    return 0;
}
