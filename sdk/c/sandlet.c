/* sandlet's guest SDK for C: the component's entry (JSON in, the author's
 * sandlet_algorithm, JSON out), a JSON reader and writer, and the data
 * queries over wit-bindgen's bindings of wit/0.1.0/algorithm.wit. See sandlet.h. */

#include "sandlet.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "algorithm.h"

/* Nesting deeper than this is refused: no input may exhaust the stack. */
#define MAX_DEPTH 128

typedef struct block {
    struct block *next;
    max_align_t data[];
} block;

typedef struct {
    char *bytes;
    size_t length;
    size_t capacity;
} buffer;

struct sandlet_run {
    block *blocks;
    buffer result;
    int depth;        /* open objects and arrays in the result */
    bool need_comma;  /* a value was written at this level */
    bool after_key;   /* a key was written; its value comes next */
    bool misused;     /* the writer was called out of order */
    sandlet_error_kind error;
    char *message;
};

/* ---- memory ------------------------------------------------------------- */

void *sandlet_alloc(sandlet_run *run, size_t size) {
    block *b = calloc(1, sizeof(block) + size);
    if (!b)
        abort(); /* out of the run's memory limit: a trap, as the host reports it */
    b->next = run->blocks;
    run->blocks = b;
    return b->data;
}

static char *copy_text(sandlet_run *run, const char *text, size_t length) {
    char *copy = sandlet_alloc(run, length + 1);
    memcpy(copy, text, length);
    return copy;
}

static char *vformat(sandlet_run *run, const char *format, va_list args) {
    va_list again;
    va_copy(again, args);
    int length = vsnprintf(NULL, 0, format, again);
    va_end(again);
    if (length < 0)
        length = 0;
    char *text = sandlet_alloc(run, (size_t)length + 1);
    vsnprintf(text, (size_t)length + 1, format, args);
    return text;
}

/* ---- errors ------------------------------------------------------------- */

static void set_error(sandlet_run *run, sandlet_error_kind kind, char *message) {
    run->error = kind;
    run->message = message;
}

int sandlet_fail(sandlet_run *run, const char *format, ...) {
    va_list args;
    va_start(args, format);
    set_error(run, SANDLET_ALGORITHM_ERROR, vformat(run, format, args));
    va_end(args);
    return SANDLET_FAILED;
}

sandlet_error_kind sandlet_error(const sandlet_run *run) { return run->error; }

const char *sandlet_error_message(const sandlet_run *run) {
    return run->message ? run->message : "";
}

/* ---- the JSON reader ---------------------------------------------------- */

typedef struct {
    sandlet_run *run;
    const char *text;
    size_t length;
    size_t at;
    const char *error; /* what was expected, or NULL */
} reader;

static bool fail_at(reader *r, const char *what) {
    if (!r->error)
        r->error = what;
    return false;
}

static void skip_space(reader *r) {
    while (r->at < r->length) {
        char c = r->text[r->at];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        r->at++;
    }
}

static bool literal(reader *r, const char *word) {
    size_t n = strlen(word);
    if (r->length - r->at < n || memcmp(r->text + r->at, word, n) != 0)
        return fail_at(r, "a value");
    r->at += n;
    return true;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool hex4(reader *r, unsigned *out) {
    if (r->length - r->at < 4)
        return fail_at(r, "four hex digits");
    unsigned value = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(r->text[r->at + i]);
        if (d < 0)
            return fail_at(r, "four hex digits");
        value = value * 16 + (unsigned)d;
    }
    r->at += 4;
    *out = value;
    return true;
}

static void put_utf8(buffer *b, unsigned cp);

/* Room in a reader's run-owned buffer for `more` bytes and the final NUL. */
static void room(sandlet_run *run, buffer *b, size_t more) {
    if (b->length + more < b->capacity)
        return;
    size_t capacity = b->capacity * 2 > b->length + more + 1 ? b->capacity * 2 : b->length + more + 1;
    char *bigger = sandlet_alloc(run, capacity);
    memcpy(bigger, b->bytes, b->length);
    b->bytes = bigger;
    b->capacity = capacity;
}

/* A string's text (after its opening quote) into *out, unescaped. */
static bool read_string(reader *r, const char **out, size_t *out_length) {
    buffer b = {0};
    b.capacity = 16;
    b.bytes = sandlet_alloc(r->run, b.capacity);
    for (;;) {
        if (r->at >= r->length)
            return fail_at(r, "the end of a string");
        unsigned char c = (unsigned char)r->text[r->at++];
        unsigned cp;
        if (c == '"')
            break;
        if (c < 0x20)
            return fail_at(r, "no control character in a string");
        if (c != '\\') {
            /* a byte of UTF-8, copied as it is */
            room(r->run, &b, 1);
            b.bytes[b.length++] = (char)c;
            continue;
        }
        if (r->at >= r->length)
            return fail_at(r, "an escape");
        char e = r->text[r->at++];
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u': {
            if (!hex4(r, &cp))
                return false;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned low;
                if (r->length - r->at < 2 || r->text[r->at] != '\\' || r->text[r->at + 1] != 'u')
                    return fail_at(r, "the second half of a surrogate pair");
                r->at += 2;
                if (!hex4(r, &low) || low < 0xDC00 || low > 0xDFFF)
                    return fail_at(r, "the second half of a surrogate pair");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return fail_at(r, "no lone surrogate");
            }
            break;
        }
        default:
            return fail_at(r, "a valid escape");
        }
        room(r->run, &b, 4);
        put_utf8(&b, cp);
    }
    b.bytes[b.length] = '\0';
    *out = b.bytes;
    *out_length = b.length;
    return true;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bool read_number(reader *r, sandlet_json *v) {
    size_t start = r->at;
    bool integral = true;
    if (r->at < r->length && r->text[r->at] == '-')
        r->at++;
    if (r->at < r->length && r->text[r->at] == '0') {
        r->at++;
    } else if (r->at < r->length && is_digit(r->text[r->at])) {
        while (r->at < r->length && is_digit(r->text[r->at]))
            r->at++;
    } else {
        return fail_at(r, "a value");
    }
    if (r->at < r->length && r->text[r->at] == '.') {
        integral = false;
        r->at++;
        if (r->at >= r->length || !is_digit(r->text[r->at]))
            return fail_at(r, "a digit after the decimal point");
        while (r->at < r->length && is_digit(r->text[r->at]))
            r->at++;
    }
    if (r->at < r->length && (r->text[r->at] == 'e' || r->text[r->at] == 'E')) {
        integral = false;
        r->at++;
        if (r->at < r->length && (r->text[r->at] == '+' || r->text[r->at] == '-'))
            r->at++;
        if (r->at >= r->length || !is_digit(r->text[r->at]))
            return fail_at(r, "a digit in the exponent");
        while (r->at < r->length && is_digit(r->text[r->at]))
            r->at++;
    }
    char *text = copy_text(r->run, r->text + start, r->at - start);
    v->type = SANDLET_JSON_NUMBER;
    v->number = strtod(text, NULL);
    if (!isfinite(v->number))
        return fail_at(r, "a number a double can hold");
    if (integral) {
        errno = 0;
        long long n = strtoll(text, NULL, 10);
        if (errno == 0) {
            v->is_integer = true;
            v->integer = n;
        }
    }
    return true;
}

static bool read_value(reader *r, sandlet_json *v, int depth);

/* The items of an array or object (after its opening bracket). */
static bool read_items(reader *r, sandlet_json *v, bool object, int depth) {
    char close = object ? '}' : ']';
    size_t capacity = 4, count = 0;
    sandlet_json *items = sandlet_alloc(r->run, capacity * sizeof *items);
    skip_space(r);
    if (r->at < r->length && r->text[r->at] == close) {
        r->at++;
    } else {
        for (;;) {
            if (count == capacity) {
                sandlet_json *bigger = sandlet_alloc(r->run, 2 * capacity * sizeof *items);
                memcpy(bigger, items, capacity * sizeof *items);
                items = bigger;
                capacity *= 2;
            }
            sandlet_json *item = &items[count];
            skip_space(r);
            if (object) {
                size_t ignored;
                if (r->at >= r->length || r->text[r->at] != '"')
                    return fail_at(r, "a member name in double quotes");
                r->at++;
                if (!read_string(r, &item->key, &ignored))
                    return false;
                for (size_t i = 0; i < count; i++)
                    if (strcmp(items[i].key, item->key) == 0)
                        return fail_at(r, "no duplicate member name");
                skip_space(r);
                if (r->at >= r->length || r->text[r->at] != ':')
                    return fail_at(r, "':' after a member name");
                r->at++;
            }
            if (!read_value(r, item, depth + 1))
                return false;
            count++;
            skip_space(r);
            if (r->at < r->length && r->text[r->at] == ',') {
                r->at++;
                continue;
            }
            if (r->at < r->length && r->text[r->at] == close) {
                r->at++;
                break;
            }
            return fail_at(r, object ? "',' or '}'" : "',' or ']'");
        }
    }
    v->type = object ? SANDLET_JSON_OBJECT : SANDLET_JSON_ARRAY;
    v->items = items;
    v->length = count;
    return true;
}

static bool read_value(reader *r, sandlet_json *v, int depth) {
    if (depth > MAX_DEPTH)
        return fail_at(r, "nesting no deeper than 128");
    skip_space(r);
    if (r->at >= r->length)
        return fail_at(r, "a value");
    switch (r->text[r->at]) {
    case '{':
        r->at++;
        return read_items(r, v, true, depth);
    case '[':
        r->at++;
        return read_items(r, v, false, depth);
    case '"':
        r->at++;
        v->type = SANDLET_JSON_STRING;
        return read_string(r, &v->string, &v->length);
    case 't':
        v->type = SANDLET_JSON_BOOL;
        v->boolean = true;
        return literal(r, "true");
    case 'f':
        v->type = SANDLET_JSON_BOOL;
        return literal(r, "false");
    case 'n':
        v->type = SANDLET_JSON_NULL;
        return literal(r, "null");
    default:
        return read_number(r, v);
    }
}

/* The input parsed, or NULL with the run's error set. */
static sandlet_json *parse_input(sandlet_run *run, const char *text, size_t length) {
    reader r = {.run = run, .text = text, .length = length};
    sandlet_json *root = sandlet_alloc(run, sizeof *root);
    if (read_value(&r, root, 0)) {
        skip_space(&r);
        if (r.at == r.length)
            return root;
        fail_at(&r, "the end of the input");
    }
    sandlet_fail(run, "invalid input: not JSON: expected %s at byte %zu", r.error, r.at);
    return NULL;
}

const sandlet_json *sandlet_json_get(const sandlet_json *value, const char *key) {
    if (!value || value->type != SANDLET_JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < value->length; i++)
        if (strcmp(value->items[i].key, key) == 0)
            return &value->items[i];
    return NULL;
}

const char *sandlet_json_string(const sandlet_json *value) {
    return value && value->type == SANDLET_JSON_STRING ? value->string : NULL;
}

bool sandlet_json_number(const sandlet_json *value, double *out) {
    if (!value || value->type != SANDLET_JSON_NUMBER)
        return false;
    *out = value->number;
    return true;
}

bool sandlet_json_only_keys(const sandlet_json *value, const char *const *allowed) {
    if (!value || value->type != SANDLET_JSON_OBJECT)
        return false;
    for (size_t i = 0; i < value->length; i++) {
        bool known = false;
        for (const char *const *a = allowed; *a && !known; a++)
            known = strcmp(value->items[i].key, *a) == 0;
        if (!known)
            return false;
    }
    return true;
}

/* ---- the JSON writer ---------------------------------------------------- */

static void reserve(buffer *b, size_t more) {
    if (b->length + more <= b->capacity)
        return;
    size_t capacity = b->capacity ? b->capacity : 256;
    while (capacity < b->length + more)
        capacity *= 2;
    char *bigger = realloc(b->bytes, capacity);
    if (!bigger)
        abort();
    b->bytes = bigger;
    b->capacity = capacity;
}

static void put(buffer *b, const char *bytes, size_t length) {
    reserve(b, length);
    memcpy(b->bytes + b->length, bytes, length);
    b->length += length;
}

static void put_utf8(buffer *b, unsigned cp) {
    char out[4];
    size_t n;
    if (cp < 0x80) {
        out[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    /* The reader's buffers are sized before this is called. */
    memcpy(b->bytes + b->length, out, n);
    b->length += n;
}

/* Before a value: the comma that separates it from the one before. */
static void before_value(sandlet_run *run) {
    if (run->after_key) {
        run->after_key = false;
    } else if (run->need_comma) {
        if (run->depth == 0)
            run->misused = true; /* a second value at the top */
        put(&run->result, ",", 1);
    }
}

static void after_value(sandlet_run *run) { run->need_comma = true; }

static void put_string(buffer *b, const char *text) {
    put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        char escaped[8];
        switch (*p) {
        case '"': put(b, "\\\"", 2); break;
        case '\\': put(b, "\\\\", 2); break;
        case '\n': put(b, "\\n", 2); break;
        case '\r': put(b, "\\r", 2); break;
        case '\t': put(b, "\\t", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(escaped, sizeof escaped, "\\u%04x", *p);
                put(b, escaped, 6);
            } else {
                put(b, (const char *)p, 1);
            }
        }
    }
    put(b, "\"", 1);
}

static void open_container(sandlet_run *run, const char *bracket) {
    before_value(run);
    put(&run->result, bracket, 1);
    run->depth++;
    run->need_comma = false;
}

static void close_container(sandlet_run *run, const char *bracket) {
    if (run->depth == 0 || run->after_key)
        run->misused = true;
    put(&run->result, bracket, 1);
    run->depth--;
    after_value(run);
}

void sandlet_begin_object(sandlet_run *run) { open_container(run, "{"); }
void sandlet_end_object(sandlet_run *run) { close_container(run, "}"); }
void sandlet_begin_array(sandlet_run *run) { open_container(run, "["); }
void sandlet_end_array(sandlet_run *run) { close_container(run, "]"); }

void sandlet_key(sandlet_run *run, const char *key) {
    if (run->depth == 0 || run->after_key)
        run->misused = true;
    if (run->need_comma)
        put(&run->result, ",", 1);
    put_string(&run->result, key);
    put(&run->result, ":", 1);
    run->after_key = true;
}

void sandlet_write_null(sandlet_run *run) {
    before_value(run);
    put(&run->result, "null", 4);
    after_value(run);
}

void sandlet_write_bool(sandlet_run *run, bool value) {
    before_value(run);
    put(&run->result, value ? "true" : "false", value ? 4 : 5);
    after_value(run);
}

void sandlet_write_int(sandlet_run *run, int64_t value) {
    char text[32];
    int n = snprintf(text, sizeof text, "%lld", (long long)value);
    before_value(run);
    put(&run->result, text, (size_t)n);
    after_value(run);
}

void sandlet_write_double(sandlet_run *run, double value) {
    if (!isfinite(value)) {
        sandlet_write_null(run);
        return;
    }
    /* The shortest of %.1g ... %.17g that reads back as the same double. */
    char text[40];
    int n = 0, precision;
    for (precision = 1; precision <= 17; precision++) {
        n = snprintf(text, sizeof text, "%.*g", precision, value);
        if (strtod(text, NULL) == value)
            break;
    }
    /* %g turns to an exponent once the exponent reaches the precision:
     * numbers below 1e17 keep their digits (310, not 3.1e+02). */
    if (value != 0) {
        int exponent = (int)floor(log10(fabs(value)));
        if (exponent >= precision && exponent < 17)
            n = snprintf(text, sizeof text, "%.*g", exponent + 1, value);
    }
    before_value(run);
    put(&run->result, text, (size_t)n);
    after_value(run);
}

void sandlet_write_string(sandlet_run *run, const char *value) {
    before_value(run);
    put_string(&run->result, value);
    after_value(run);
}

void sandlet_write_value(sandlet_run *run, const sandlet_value *value) {
    if (!value) {
        sandlet_write_null(run);
        return;
    }
    switch (value->kind) {
    case SANDLET_NULL: sandlet_write_null(run); break;
    case SANDLET_BOOLEAN: sandlet_write_bool(run, value->boolean); break;
    case SANDLET_INT: sandlet_write_int(run, value->integer); break;
    case SANDLET_FLOAT: sandlet_write_double(run, value->real); break;
    case SANDLET_TEXT: sandlet_write_string(run, value->text); break;
    }
}

void sandlet_write_number_or_null(sandlet_run *run, const sandlet_value *value) {
    double x;
    if (sandlet_value_number(value, &x))
        sandlet_write_double(run, x);
    else
        sandlet_write_null(run);
}

/* ---- data --------------------------------------------------------------- */

static const char *wit_text(sandlet_run *run, const algorithm_string_t *s) {
    return copy_text(run, (const char *)s->ptr, s->len);
}

static void copy_value(sandlet_run *run, const sandlet_algorithm_data_value_t *from, sandlet_value *to) {
    switch (from->tag) {
    case SANDLET_ALGORITHM_DATA_VALUE_BOOLEAN:
        to->kind = SANDLET_BOOLEAN;
        to->boolean = from->val.boolean;
        break;
    case SANDLET_ALGORITHM_DATA_VALUE_INT:
        to->kind = SANDLET_INT;
        to->integer = from->val.int_;
        break;
    case SANDLET_ALGORITHM_DATA_VALUE_FLOAT:
        to->kind = SANDLET_FLOAT;
        to->real = from->val.float_;
        break;
    case SANDLET_ALGORITHM_DATA_VALUE_TEXT:
        to->kind = SANDLET_TEXT;
        to->text = wit_text(run, &from->val.text);
        break;
    default:
        to->kind = SANDLET_NULL;
    }
}

sandlet_table *sandlet_query(sandlet_run *run, const char *sql) {
    algorithm_string_t query;
    algorithm_string_set(&query, sql);
    sandlet_algorithm_data_table_t answer;
    sandlet_algorithm_data_error_t error;
    if (!sandlet_algorithm_data_query(&query, &answer, &error)) {
        static const struct {
            const char *name;
            sandlet_error_kind kind;
        } kinds[] = {
            [SANDLET_ALGORITHM_DATA_ERROR_NOT_GRANTED] = {"not-granted", SANDLET_NOT_GRANTED},
            [SANDLET_ALGORITHM_DATA_ERROR_DENIED] = {"denied", SANDLET_DENIED},
            [SANDLET_ALGORITHM_DATA_ERROR_INVALID] = {"invalid", SANDLET_INVALID},
            [SANDLET_ALGORITHM_DATA_ERROR_LIMIT_EXCEEDED] = {"limit-exceeded", SANDLET_LIMIT_EXCEEDED},
        };
        /* Every case of the error variant carries its detail as a string. */
        const algorithm_string_t *detail = &error.val.not_granted;
        size_t length = strlen(kinds[error.tag].name) + 2 + detail->len;
        char *message = sandlet_alloc(run, length + 1);
        snprintf(message, length + 1, "%s: %.*s", kinds[error.tag].name, (int)detail->len,
                 (const char *)detail->ptr);
        set_error(run, kinds[error.tag].kind, message);
        sandlet_algorithm_data_error_free(&error);
        return NULL;
    }
    sandlet_table *table = sandlet_alloc(run, sizeof *table);
    table->columns = answer.columns.len;
    table->names = sandlet_alloc(run, (answer.columns.len + 1) * sizeof *table->names);
    for (size_t c = 0; c < answer.columns.len; c++)
        table->names[c] = wit_text(run, &answer.columns.ptr[c]);
    table->rows = answer.rows.len;
    table->values = sandlet_alloc(run, (answer.rows.len * answer.columns.len + 1) * sizeof *table->values);
    for (size_t r = 0; r < answer.rows.len; r++) {
        const sandlet_algorithm_data_list_value_t *row = &answer.rows.ptr[r];
        for (size_t c = 0; c < answer.columns.len && c < row->len; c++)
            copy_value(run, &row->ptr[c], &table->values[r * table->columns + c]);
    }
    sandlet_algorithm_data_table_free(&answer);
    return table;
}

sandlet_table *sandlet_queryf(sandlet_run *run, const char *format, ...) {
    va_list args;
    va_start(args, format);
    char *sql = vformat(run, format, args);
    va_end(args);
    return sandlet_query(run, sql);
}

sandlet_table *sandlet_datasets(sandlet_run *run) {
    sandlet_algorithm_data_list_dataset_info_t granted;
    sandlet_algorithm_data_datasets(&granted);
    size_t rows = 0;
    for (size_t d = 0; d < granted.len; d++)
        rows += granted.ptr[d].columns.len;
    sandlet_table *table = sandlet_alloc(run, sizeof *table);
    static const char *names[] = {"dataset", "column", "type"};
    table->columns = 3;
    table->names = names;
    table->rows = rows;
    table->values = sandlet_alloc(run, (rows * 3 + 1) * sizeof *table->values);
    size_t r = 0;
    for (size_t d = 0; d < granted.len; d++) {
        const sandlet_algorithm_data_dataset_info_t *info = &granted.ptr[d];
        for (size_t c = 0; c < info->columns.len; c++, r++) {
            sandlet_value *row = &table->values[r * 3];
            row[0] = (sandlet_value){.kind = SANDLET_TEXT, .text = wit_text(run, &info->name)};
            row[1] = (sandlet_value){.kind = SANDLET_TEXT, .text = wit_text(run, &info->columns.ptr[c].name)};
            row[2] = (sandlet_value){.kind = SANDLET_TEXT,
                                     .text = wit_text(run, &info->columns.ptr[c].data_type)};
        }
    }
    sandlet_algorithm_data_list_dataset_info_free(&granted);
    return table;
}

const sandlet_value *sandlet_cell(const sandlet_table *table, size_t row, size_t column) {
    if (!table || row >= table->rows || column >= table->columns)
        return NULL;
    return &table->values[row * table->columns + column];
}

bool sandlet_value_number(const sandlet_value *value, double *out) {
    if (!value)
        return false;
    if (value->kind == SANDLET_INT) {
        *out = (double)value->integer;
        return true;
    }
    if (value->kind == SANDLET_FLOAT) {
        *out = value->real;
        return true;
    }
    return false;
}

const char *sandlet_quote(sandlet_run *run, const char *identifier) {
    size_t quotes = 0, length = strlen(identifier);
    for (const char *p = identifier; *p; p++)
        quotes += *p == '"';
    char *quoted = sandlet_alloc(run, length + quotes + 3);
    char *out = quoted;
    *out++ = '"';
    for (const char *p = identifier; *p; p++) {
        if (*p == '"')
            *out++ = '"';
        *out++ = *p;
    }
    *out++ = '"';
    return quoted;
}

/* ---- the entry ---------------------------------------------------------- */

/* Hands `text` to the host as a string it frees after the call. */
static void give(algorithm_string_t *out, const char *text, size_t length) {
    uint8_t *bytes = malloc(length ? length : 1);
    if (!bytes)
        abort();
    memcpy(bytes, text, length);
    out->ptr = bytes;
    out->len = length;
}

bool exports_algorithm_run(algorithm_string_t *input, algorithm_string_t *ret, algorithm_string_t *err) {
    sandlet_run run = {0};
    bool ok = false;
    sandlet_json *args = parse_input(&run, (const char *)input->ptr, input->len);
    algorithm_string_free(input);
    if (args) {
        int status = sandlet_algorithm(&run, args);
        if (status != SANDLET_OK) {
            if (run.error == SANDLET_NO_ERROR)
                sandlet_fail(&run, "the algorithm failed (returned %d with no error set)", status);
        } else if (run.result.length == 0) {
            sandlet_fail(&run, "the algorithm wrote no result");
        } else if (run.misused || run.depth != 0 || run.after_key) {
            sandlet_fail(&run, "the result is not JSON: an object or array left open, or a key without a value");
        } else {
            give(ret, run.result.bytes, run.result.length);
            ok = true;
        }
    }
    if (!ok)
        give(err, sandlet_error_message(&run), strlen(sandlet_error_message(&run)));
    free(run.result.bytes);
    while (run.blocks) {
        block *next = run.blocks->next;
        free(run.blocks);
        run.blocks = next;
    }
    return ok;
}
