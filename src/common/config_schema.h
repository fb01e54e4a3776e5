/* The config schema engine: tables of fields (key, type, offset, range, reference target)
 * that drive parsing from the YAML tree, defaults, freeing, JSON dumps and reference checks.
 * config_fusion.c and config_agent.c hold the tables; config.c holds the engine. */
#ifndef FU_CONFIG_SCHEMA_H
#define FU_CONFIG_SCHEMA_H

#include "common/config.h"

#include <stddef.h>

enum fu_ft {
    FT_STR,     /* char *                                                     */
    FT_ENUM,    /* char *, one of `choices`                                   */
    FT_INT,     /* int64_t                                                    */
    FT_FLOAT,   /* double (NAN when null and F_NULLABLE)                      */
    FT_BOOL,    /* bool                                                       */
    FT_STRV,    /* struct fu_strv: a list of strings                          */
    FT_REF,     /* struct fu_cfg_ref: the id of an item of section `ref`      */
    FT_REFV,    /* struct fu_cfg_refv: a list of such ids                     */
    FT_OBJ,     /* a nested mapping parsed into base+off with schema `sub`    */
    FT_SECTION, /* struct fu_cfg_vec: a mapping of id -> item of `sub`        */
    FT_LIST,    /* struct fu_cfg_vec: a list of mappings of `sub`             */
    FT_ANY,     /* char *: any scalar, kept as JSON text                      */
};

enum {
    F_NULLABLE = 1 << 0,  /* null is accepted: strings -> NULL, floats -> NAN  */
    F_SECRET = 1 << 1,    /* redacted in dumps                                  */
    F_REQUIRED = 1 << 2,  /* must be present                                    */
    F_SHORTHAND = 1 << 3, /* FT_OBJ: a scalar sets the sub-schema's first field */
    F_ICASE = 1 << 4,     /* FT_ENUM: matched case-insensitively, stored upper  */
    F_NONEMPTY = 1 << 5,  /* strings and lists must not be empty                */
    F_ALIAS = 1 << 6,     /* FT_OBJ: another spelling of fields dumped elsewhere */
    F_ONE_OK = 1 << 7,    /* FT_STRV: a single string stands for a list of one   */
    F_ITEM_LOC = 1 << 8,  /* FT_LIST: items start with a struct fu_loc, set to
                             where the item is, for the semantic checks' messages */
};

struct fu_schema;

struct fu_field {
    const char *key;
    enum fu_ft type;
    size_t off;
    unsigned flags;
    double min, max;            /* inclusive range for numbers; 0, 0 = unbounded */
    const char *const *choices; /* FT_ENUM, NULL-terminated */
    const struct fu_schema *sub;
    const char *ref; /* FT_REF/FT_REFV: the root section key */
};

struct fu_schema {
    const char *name; /* singular, for messages: "receiver" */
    const struct fu_field *fields;
    size_t nfields;
    size_t size;                  /* item size for sections and lists */
    void (*defaults)(void *item); /* may be NULL */
};

extern const struct fu_schema fu_fusion_schema;
extern const struct fu_schema fu_agent_schema;

/* Semantic checks beyond types and references (duplicate keys, URIs, ...). */
void fu_fusion_check(const struct fu_config *cfg, struct fu_diags *d);
void fu_agent_check(const struct fu_config *cfg, struct fu_diags *d);

#define FU_COUNT(a) (sizeof(a) / sizeof((a)[0]))

#endif
