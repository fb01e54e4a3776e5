/* Micro-benchmark: parse a 1000-row Fustor v1 event batch with the pull reader, extracting
 * each row's fields as ingest will, and write the same batch with the writer. Prints one
 * JSON line of results on stdout and a human summary on stderr. */
#include "common/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROWS 1000

struct row {
    const char *path;
    size_t path_len;
    const char *name;
    size_t name_len;
    int64_t size;
    double mtime, ctime, parent_mtime;
    bool is_dir, audit_skipped, atomic;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Row strings, made once so the write loop measures the writer, not snprintf. */
static char paths[ROWS][96], names[ROWS][32], parents[ROWS][64];

static void make_rows(void)
{
    for (int i = 0; i < ROWS; i++) {
        snprintf(names[i], sizeof(names[i]), "file%06d.txt", i * 7919 % 1000000);
        snprintf(parents[i], sizeof(parents[i]), "/data/project%02d/dir%03d", i % 17, i % 251);
        snprintf(paths[i], sizeof(paths[i]), "%s/%s", parents[i], names[i]);
    }
}

static void write_batch(struct fu_buf *out)
{
    struct fu_jw w;
    fu_jw_init(&w, out);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "session_id");
    fu_jw_cstr(&w, "7d1f3c52-9a0e-4c1b-8d9e-0b4a6f1e2c3d");
    fu_jw_ckey(&w, "source_type");
    fu_jw_cstr(&w, "snapshot");
    fu_jw_ckey(&w, "is_end");
    fu_jw_bool(&w, false);
    fu_jw_ckey(&w, "metadata");
    fu_jw_null(&w);
    fu_jw_ckey(&w, "events");
    fu_jw_arr_begin(&w);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "event_id");
    fu_jw_null(&w);
    fu_jw_ckey(&w, "timestamp");
    fu_jw_double(&w, 1706000000.12);
    fu_jw_ckey(&w, "event_type");
    fu_jw_cstr(&w, "update");
    fu_jw_ckey(&w, "fields");
    fu_jw_arr_begin(&w);
    const char *fields[] = {"path",          "file_name",    "size",
                            "modified_time", "created_time", "is_directory"};
    for (int i = 0; i < 6; i++)
        fu_jw_cstr(&w, fields[i]);
    fu_jw_arr_end(&w);
    fu_jw_ckey(&w, "rows");
    fu_jw_arr_begin(&w);
    for (int i = 0; i < ROWS; i++) {
        const char *path = paths[i], *name = names[i], *parent = parents[i];
        fu_jw_obj_begin(&w);
        fu_jw_ckey(&w, "path");
        fu_jw_cstr(&w, path);
        fu_jw_ckey(&w, "file_name");
        fu_jw_cstr(&w, name);
        fu_jw_ckey(&w, "size");
        fu_jw_int(&w, (int64_t)i * 104729 % 100000000);
        fu_jw_ckey(&w, "modified_time");
        fu_jw_double(&w, 1706000123.0 + i * 0.37);
        fu_jw_ckey(&w, "created_time");
        fu_jw_double(&w, 1706000100.0 + i);
        fu_jw_ckey(&w, "is_directory");
        fu_jw_bool(&w, i % 50 == 0);
        fu_jw_ckey(&w, "parent_path");
        fu_jw_cstr(&w, parent);
        fu_jw_ckey(&w, "parent_mtime");
        fu_jw_double(&w, 1706000100.0);
        fu_jw_ckey(&w, "audit_skipped");
        fu_jw_bool(&w, false);
        fu_jw_ckey(&w, "is_atomic_write");
        fu_jw_bool(&w, true);
        fu_jw_obj_end(&w);
    }
    fu_jw_arr_end(&w);
    fu_jw_ckey(&w, "index");
    fu_jw_int(&w, 1706000000123);
    fu_jw_ckey(&w, "event_schema");
    fu_jw_cstr(&w, "fs");
    fu_jw_ckey(&w, "table");
    fu_jw_cstr(&w, "files");
    fu_jw_ckey(&w, "message_source");
    fu_jw_cstr(&w, "snapshot");
    fu_jw_ckey(&w, "metadata");
    fu_jw_obj_begin(&w);
    fu_jw_obj_end(&w);
    fu_jw_obj_end(&w);
    fu_jw_arr_end(&w);
    fu_jw_obj_end(&w);
}

static bool key_is(const struct fu_jr *r, const char *k, size_t n)
{
    return r->str_len == n && !memcmp(r->str, k, n);
}

/* Walks the batch as ingest does: into events[].rows[], one struct row per row. */
static size_t parse_batch(const char *doc, size_t len, struct row *rows)
{
    struct fu_jr r;
    fu_jr_init(&r, doc, len);
    size_t n = 0;
    enum fu_json_tok t;
    while ((t = fu_jr_next(&r)) > FU_JSON_EOF) {
        if (t != FU_JSON_KEY || fu_jr_depth(&r) != 3 || !key_is(&r, "rows", 4))
            continue;
        if (fu_jr_next(&r) != FU_JSON_ARR_BEGIN)
            break;
        while (fu_jr_next(&r) == FU_JSON_OBJ_BEGIN) {
            struct row *w = &rows[n < ROWS ? n : ROWS - 1];
            while (fu_jr_next(&r) == FU_JSON_KEY) {
                char k0 = r.str_len ? r.str[0] : 0;
                size_t kl = r.str_len;
                enum fu_json_tok v = fu_jr_next(&r);
                if (k0 == 'p' && kl == 4) {
                    w->path = r.str;
                    w->path_len = r.str_len;
                } else if (k0 == 'f' && kl == 9) {
                    w->name = r.str;
                    w->name_len = r.str_len;
                } else if (k0 == 's' && kl == 4) {
                    w->size = r.i64;
                } else if (k0 == 'm') {
                    w->mtime = v == FU_JSON_INT ? (double)r.i64 : r.dbl;
                } else if (k0 == 'c') {
                    w->ctime = v == FU_JSON_INT ? (double)r.i64 : r.dbl;
                } else if (k0 == 'i' && kl == 12) {
                    w->is_dir = v == FU_JSON_TRUE;
                } else if (k0 == 'p' && kl == 12) {
                    w->parent_mtime = r.dbl;
                } else if (k0 == 'a') {
                    w->audit_skipped = v == FU_JSON_TRUE;
                } else if (k0 == 'i') {
                    w->atomic = v == FU_JSON_TRUE;
                } else if (v == FU_JSON_OBJ_BEGIN || v == FU_JSON_ARR_BEGIN) {
                    fu_jr_skip(&r);
                }
            }
            n++;
        }
    }
    if (t == FU_JSON_ERROR) {
        fprintf(stderr, "parse error at %zu: %s\n", r.err_off, r.err_msg);
        exit(1);
    }
    fu_jr_free(&r);
    return n;
}

int main(int argc, char **argv)
{
    make_rows();
    struct fu_buf batch = FU_BUF_INIT;
    write_batch(&batch);
    if (argc > 1) { /* the batch, for baselines that parse the same bytes */
        FILE *f = fopen(argv[1], "wb");
        if (!f || fwrite(batch.data, 1, batch.len, f) != batch.len || fclose(f) != 0) {
            fprintf(stderr, "bench: cannot write %s\n", argv[1]);
            return 1;
        }
    }
    static struct row rows[ROWS];
    if (parse_batch(batch.data, batch.len, rows) != ROWS || rows[1].size != 104729) {
        fprintf(stderr, "bench: the batch did not parse back as written\n");
        return 1;
    }
    size_t iters = 0, total_rows = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < 50; i++)
            total_rows += parse_batch(batch.data, batch.len, rows);
        iters += 50;
        t = now() - t0;
    } while (t < 2.0);
    double parse_rows = total_rows / t, parse_mb = iters * batch.len / t / 1e6;

    struct fu_buf out = FU_BUF_INIT;
    size_t witers = 0;
    t0 = now();
    do {
        for (int i = 0; i < 50; i++) {
            fu_buf_reset(&out);
            write_batch(&out);
        }
        witers += 50;
        t = now() - t0;
    } while (t < 2.0);
    double write_rows = witers * ROWS / t;

    printf("{\"bench\":\"json_batch\",\"rows_per_batch\":%d,\"batch_bytes\":%zu,"
           "\"parse_rows_per_s\":%.0f,\"parse_mb_per_s\":%.1f,\"write_rows_per_s\":%.0f}\n",
           ROWS, batch.len, parse_rows, parse_mb, write_rows);
    fprintf(stderr,
            "json_batch: %d-row v1 batch (%zu bytes): parse %.2fM rows/s (%.0f MB/s), "
            "write %.2fM rows/s\n",
            ROWS, batch.len, parse_rows / 1e6, parse_mb, write_rows / 1e6);
    fu_buf_free(&batch);
    fu_buf_free(&out);
    return 0;
}
