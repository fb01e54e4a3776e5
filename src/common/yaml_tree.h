/* A small YAML document tree with a line:col on every node, built from libfyaml's event
 * parser. Config validation walks this tree; keeping our own nodes means every error can
 * point at the exact place, including empty values and whole mappings. */
#ifndef FU_YAML_TREE_H
#define FU_YAML_TREE_H

#include "common/diag.h"

#include <stdbool.h>
#include <stddef.h>

enum fu_ynode_type { FU_Y_SCALAR, FU_Y_MAP, FU_Y_SEQ };

struct fu_ynode {
    enum fu_ynode_type type;
    int line, col; /* 1-based */
    /* scalar */
    char *s; /* owned, NUL-terminated; may contain NUL only if len says so */
    size_t len;
    bool plain;   /* plain (unquoted) style: subject to null/bool/number resolution */
    bool is_null; /* plain "", "~", "null", "Null", "NULL" */
    /* map: kids[2i] is a key, kids[2i+1] its value; seq: kids[i] */
    struct fu_ynode **kids; /* owned */
    size_t n;
};

/* Parses one YAML file. Returns the root (NULL for an empty file, or on error). Syntax errors,
 * duplicate keys, aliases and multi-document files are reported in `d`; *ok is false then. */
struct fu_ynode *fu_yaml_load_file(const char *path, struct fu_diags *d, bool *ok);
struct fu_ynode *fu_yaml_load_string(const char *name, const char *text, size_t len,
                                     struct fu_diags *d, bool *ok);
void fu_ynode_free(struct fu_ynode *n);
const char *fu_ynode_type_name(const struct fu_ynode *n);

#endif
