/* A pipe's fields_mapping (Fustor v1's EventMapper): each row sent to Fusion becomes a
 * projection onto the mapped targets. The config is compiled once per pipe into a small tree
 * of target keys (leaves: a row field with its conversion, or a hardcoded JSON value), and
 * rows are written from their values straight into the JSON writer, with no intermediate
 * objects. A pipe without a mapping compiles to NULL and never calls into this module. */
#ifndef FU_AGENT_FIELDMAP_H
#define FU_AGENT_FIELDMAP_H

#include "common/config.h"
#include "common/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The fields of an fs row (v1's FSRow keys), what "field:type" can name. */
enum fu_fm_field {
    FU_FM_PATH,
    FU_FM_FILE_NAME,
    FU_FM_SIZE,
    FU_FM_MODIFIED_TIME,
    FU_FM_CREATED_TIME,
    FU_FM_IS_DIRECTORY,
    FU_FM_PARENT_PATH,     /* audit rows with a parent in the directory-mtime cache */
    FU_FM_PARENT_MTIME,    /* the same rows */
    FU_FM_AUDIT_SKIPPED,   /* audit rows of unchanged directories */
    FU_FM_IS_ATOMIC_WRITE, /* realtime upserts */
    FU_FM_NFIELDS,
};
#define FU_FM_BIT(f) (1u << (f))

extern const char *const fu_fm_field_names[FU_FM_NFIELDS];

/* One row as the agent would send it without a mapping: `present` has the bit of each field
 * the row carries (a field not there is v1's None: its targets are not written). Members of
 * absent fields are not read. Strings are borrowed, not NUL-terminated. */
struct fu_fm_row {
    unsigned present;
    const char *path, *file_name, *parent_path;
    size_t path_len, file_name_len, parent_path_len;
    uint64_t size;
    double modified_time, created_time, parent_mtime;
    bool is_directory, audit_skipped, is_atomic_write;
};

/* The fields every row has: path and its file name, and unless it is a delete (!attrs) its
 * size, times and type; the same fields the unmapped writer sends. */
void fu_fm_row_init(struct fu_fm_row *r, const char *path, size_t len, bool attrs, uint64_t size,
                    double mtime, double ctime, bool is_dir);

struct fu_fieldmap;

/* Compiles a pipe's fields_mapping (items of struct fu_cfg_field_map). An empty list gives
 * *out = NULL: rows pass unchanged. Returns 0; -EINVAL, with a message in `err`, for entries
 * config validation refuses (a duplicate target, a target that is both a value and an
 * object, an empty key, no source nor value); or -ENOMEM. */
int fu_fieldmap_compile(const struct fu_cfg_vec *mappings, struct fu_fieldmap **out, char *err,
                        size_t errlen);
void fu_fieldmap_free(struct fu_fieldmap *m);

/* Writes the mapped members of `r` into the row object open in `w`. */
void fu_fieldmap_write(const struct fu_fieldmap *m, struct fu_jw *w, const struct fu_fm_row *r);

/* The top-level target keys as a JSON array, for a batch's "fields" (owned by m). */
const char *fu_fieldmap_fields_json(const struct fu_fieldmap *m);

#endif
