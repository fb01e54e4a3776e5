/* libFuzzer harness for the JSON reader and writer. For any input: the reader must not
 * misbehave; a document it accepts, re-encoded token by token through the writer, must be
 * accepted again and re-encode to the same bytes (the writer's output is canonical); and the
 * input taken as a byte string must survive fu_json_escape and the reader unchanged. */
#include "common/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int reencode(const char *doc, size_t len, struct fu_buf *out)
{
    struct fu_jr r;
    struct fu_jw w;
    fu_jr_init(&r, doc, len);
    fu_jw_init(&w, out);
    enum fu_json_tok t;
    while ((t = fu_jr_next(&r)) > FU_JSON_EOF) {
        switch (t) {
        case FU_JSON_OBJ_BEGIN:
            fu_jw_obj_begin(&w);
            break;
        case FU_JSON_OBJ_END:
            fu_jw_obj_end(&w);
            break;
        case FU_JSON_ARR_BEGIN:
            fu_jw_arr_begin(&w);
            break;
        case FU_JSON_ARR_END:
            fu_jw_arr_end(&w);
            break;
        case FU_JSON_KEY:
            fu_jw_key(&w, r.str, r.str_len);
            break;
        case FU_JSON_STRING:
            fu_jw_str(&w, r.str, r.str_len);
            break;
        case FU_JSON_INT:
            fu_jw_int(&w, r.i64);
            break;
        case FU_JSON_DOUBLE:
            fu_jw_double(&w, r.dbl);
            break;
        case FU_JSON_TRUE:
        case FU_JSON_FALSE:
            fu_jw_bool(&w, t == FU_JSON_TRUE);
            break;
        default:
            fu_jw_null(&w);
        }
    }
    fu_jr_free(&r);
    return t == FU_JSON_EOF ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *doc = (const char *)data;
    struct fu_buf a = FU_BUF_INIT, b = FU_BUF_INIT;
    if (reencode(doc, size, &a) == 0) {
        /* The writer's output is canonical: reading and re-writing it changes nothing. */
        if (reencode(fu_buf_str(&a), a.len, &b) != 0 || a.len != b.len ||
            memcmp(fu_buf_str(&a), fu_buf_str(&b), a.len))
            abort();
    }
    fu_buf_reset(&b);
    fu_json_escape(&b, doc, size);
    struct fu_jr r;
    fu_jr_init(&r, fu_buf_str(&b), b.len);
    if (fu_jr_next(&r) != FU_JSON_STRING || r.str_len != size ||
        (size && memcmp(r.str, doc, size)) || fu_jr_next(&r) != FU_JSON_EOF)
        abort();
    fu_jr_free(&r);
    fu_buf_free(&a);
    fu_buf_free(&b);
    return 0;
}
