/* sandlet's guest SDK for C algorithms.
 *
 * An algorithm defines one function, which receives its input as parsed
 * JSON and writes its result as JSON:
 *
 *     #include "sandlet.h"
 *
 *     int sandlet_algorithm(sandlet_run *run, const sandlet_json *input) {
 *         const char *dataset = sandlet_json_string(sandlet_json_get(input, "dataset"));
 *         if (!dataset)
 *             return sandlet_fail(run, "invalid input: expected {\"dataset\": NAME}");
 *         sandlet_table *t = sandlet_queryf(run, "SELECT COUNT(*) FROM %s",
 *                                           sandlet_quote(run, dataset));
 *         if (!t)
 *             return SANDLET_FAILED;          // refused: the run's error is set
 *         sandlet_begin_object(run);
 *         sandlet_key(run, "count");
 *         sandlet_write_value(run, sandlet_cell(t, 0, 0));
 *         sandlet_end_object(run);
 *         return SANDLET_OK;
 *     }
 *
 * Data comes only from sandlet_query, which the host answers under the
 * station's disclosure policy. A refused query returns NULL, sets the run's
 * error to "kind: detail" (not-granted, denied, invalid, limit-exceeded) and
 * sandlet_error() says which kind; returning SANDLET_FAILED then ends the
 * run with that error. sandlet_fail() sets an error of the algorithm's own.
 *
 * Memory: everything the SDK hands out (tables, quoted names, formatted
 * queries, the parsed input) belongs to the run and is freed when it ends;
 * an algorithm frees nothing it got from here. There is no network, no
 * clock worth trusting and no file unless a volume grants one.
 *
 * Built with clang for wasm32-wasi (wasi-libc), wit-bindgen's C bindings of
 * wit/0.1.0/algorithm.wit and the component linker: `sandlet build DIR`.
 */
#ifndef SANDLET_H
#define SANDLET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What sandlet_algorithm returns. */
#define SANDLET_OK 0
#define SANDLET_FAILED (-1)

/* One run of the algorithm: its result, its error and its memory. */
typedef struct sandlet_run sandlet_run;

/* ---- input: parsed JSON ------------------------------------------------ */

typedef enum {
    SANDLET_JSON_NULL,
    SANDLET_JSON_BOOL,
    SANDLET_JSON_NUMBER,
    SANDLET_JSON_STRING,
    SANDLET_JSON_ARRAY,
    SANDLET_JSON_OBJECT,
} sandlet_json_type;

typedef struct sandlet_json sandlet_json;
struct sandlet_json {
    sandlet_json_type type;
    const char *key;      /* the member's name, for members of an object */
    bool boolean;         /* BOOL */
    double number;        /* NUMBER */
    bool is_integer;      /* NUMBER written without fraction or exponent, within int64 */
    int64_t integer;      /* NUMBER, when is_integer */
    const char *string;   /* STRING, NUL-terminated (see length for embedded NULs) */
    size_t length;        /* STRING: bytes; ARRAY, OBJECT: items */
    sandlet_json *items;  /* ARRAY, OBJECT: the items, in order */
};

/* An object's member, or NULL when value is not an object or has no such key. */
const sandlet_json *sandlet_json_get(const sandlet_json *value, const char *key);
/* The text of a string, or NULL when value is NULL or not a string. */
const char *sandlet_json_string(const sandlet_json *value);
/* value is a number (sets *out) */
bool sandlet_json_number(const sandlet_json *value, double *out);
/* value is an object whose keys are all among the NULL-terminated `allowed`. */
bool sandlet_json_only_keys(const sandlet_json *value, const char *const *allowed);

/* ---- data: queries answered by the station ------------------------------ */

typedef enum {
    SANDLET_NULL,
    SANDLET_BOOLEAN,
    SANDLET_INT,
    SANDLET_FLOAT,
    SANDLET_TEXT,
} sandlet_value_kind;

typedef struct {
    sandlet_value_kind kind;
    bool boolean;     /* BOOLEAN */
    int64_t integer;  /* INT */
    double real;      /* FLOAT */
    const char *text; /* TEXT */
} sandlet_value;

typedef struct {
    size_t columns;        /* how many columns */
    const char **names;    /* their names */
    size_t rows;           /* how many rows */
    sandlet_value *values; /* rows * columns values, row by row */
} sandlet_table;

typedef enum {
    SANDLET_NO_ERROR,
    SANDLET_NOT_GRANTED,    /* not granted to this run, or does not exist */
    SANDLET_DENIED,         /* breaks the dataset's disclosure policy */
    SANDLET_INVALID,        /* cannot be parsed or planned */
    SANDLET_LIMIT_EXCEEDED, /* time, row or memory limit */
    SANDLET_ALGORITHM_ERROR /* set by sandlet_fail */
} sandlet_error_kind;

/* Runs one SQL query on the granted datasets (each a table of the same
 * name). NULL when refused: the run's error is then "kind: detail". */
sandlet_table *sandlet_query(sandlet_run *run, const char *sql);
/* sandlet_query of a printf-formatted query. */
sandlet_table *sandlet_queryf(sandlet_run *run, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
/* The value at (row, column), or NULL outside the table. */
const sandlet_value *sandlet_cell(const sandlet_table *table, size_t row, size_t column);
/* value is an INT or a FLOAT (sets *out as a double). */
bool sandlet_value_number(const sandlet_value *value, double *out);
/* An SQL identifier in double quotes, taken literally whatever it holds. */
const char *sandlet_quote(sandlet_run *run, const char *identifier);
/* The granted datasets: names and visible columns, as a table of
 * (dataset, column, type) rows. */
sandlet_table *sandlet_datasets(sandlet_run *run);

/* ---- errors ------------------------------------------------------------- */

/* Ends the run with a printf-formatted message as its error; returns
 * SANDLET_FAILED. */
int sandlet_fail(sandlet_run *run, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* The kind of the run's error so far (SANDLET_NO_ERROR when none). */
sandlet_error_kind sandlet_error(const sandlet_run *run);
/* The run's error message so far ("" when none). */
const char *sandlet_error_message(const sandlet_run *run);

/* ---- result: written as JSON -------------------------------------------- */

void sandlet_begin_object(sandlet_run *run);
void sandlet_end_object(sandlet_run *run);
void sandlet_begin_array(sandlet_run *run);
void sandlet_end_array(sandlet_run *run);
/* The next member's name, inside an object. */
void sandlet_key(sandlet_run *run, const char *key);
void sandlet_write_null(sandlet_run *run);
void sandlet_write_bool(sandlet_run *run, bool value);
void sandlet_write_int(sandlet_run *run, int64_t value);
/* The shortest text that reads back as the same double; NaN and the
 * infinities (not JSON) are written as null. */
void sandlet_write_double(sandlet_run *run, double value);
void sandlet_write_string(sandlet_run *run, const char *value);
/* A query's value as JSON (text as a string, NULL as null). */
void sandlet_write_value(sandlet_run *run, const sandlet_value *value);
/* A double, or null when value is NULL (what an empty aggregate gives). */
void sandlet_write_number_or_null(sandlet_run *run, const sandlet_value *value);

/* ---- memory ------------------------------------------------------------- */

/* size bytes that live until the run ends (zeroed). */
void *sandlet_alloc(sandlet_run *run, size_t size);

/* ---- the algorithm ------------------------------------------------------ */

/* Defined by the algorithm: write the result and return SANDLET_OK, or
 * return SANDLET_FAILED with the run's error set. */
int sandlet_algorithm(sandlet_run *run, const sandlet_json *input);

#ifdef __cplusplus
}
#endif

#endif /* SANDLET_H */
