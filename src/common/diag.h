/* Diagnostics: errors and warnings with a file:line:col location, collected while loading
 * config so that every problem is reported at once rather than only the first. */
#ifndef FU_DIAG_H
#define FU_DIAG_H

#include <stdarg.h>
#include <stddef.h>

enum fu_sev { FU_SEV_ERROR, FU_SEV_WARNING };

struct fu_diag {
    enum fu_sev sev;
    char *file; /* owned; may be NULL for problems not tied to a file (env, CLI) */
    int line;   /* 1-based; 0 = whole file */
    int col;    /* 1-based; 0 = unknown */
    char *msg;  /* owned */
};

struct fu_diags {
    struct fu_diag *v; /* owned array */
    size_t n, cap;
    size_t n_errors, n_warnings;
};

void fu_diags_init(struct fu_diags *d);
void fu_diags_free(struct fu_diags *d);
void fu_diags_add(struct fu_diags *d, enum fu_sev sev, const char *file, int line, int col,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void fu_diags_vadd(struct fu_diags *d, enum fu_sev sev, const char *file, int line, int col,
                   const char *fmt, va_list ap);
/* "file:line:col: error: msg" into a caller buffer-free string (caller frees). */
char *fu_diag_format(const struct fu_diag *g);

#endif
