/* libFuzzer harness for the JSON reader and writer. For any input: the reader must not
 * misbehave; a document it accepts, re-encoded token by token through the writer, must be
 * accepted again and re-encode to the same bytes (the writer's output is canonical); and the
 * input taken as a byte string must survive fu_json_escape and the reader unchanged. */
#include "common/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Re-encodes a whole document through the writer; 0 if the reader accepted it. */
static int reencode(const char *doc, size_t len, struct fu_buf *out)
{
    struct fu_jr r;
    struct fu_jw w;
    fu_jr_init(&r, doc, len);
    fu_jw_init(&w, out);
    int rc = fu_json_copy_value(&r, fu_jr_next(&r), &w);
    if (rc == 0 && fu_jr_next(&r) != FU_JSON_EOF)
        rc = -1;
    fu_jr_free(&r);
    return rc;
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
