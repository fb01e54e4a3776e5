/* Diagnostic list; see diag.h. */
#include "common/diag.h"

#include "common/buf.h"

#include <stdlib.h>
#include <string.h>

void fu_diags_init(struct fu_diags *d)
{
    memset(d, 0, sizeof(*d));
}

void fu_diags_free(struct fu_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].file);
        free(d->v[i].msg);
    }
    free(d->v);
    fu_diags_init(d);
}

void fu_diags_vadd(struct fu_diags *d, enum fu_sev sev, const char *file, int line, int col,
                   const char *fmt, va_list ap)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        struct fu_diag *v = realloc(d->v, cap * sizeof(*v));
        if (!v)
            return;
        d->v = v;
        d->cap = cap;
    }
    struct fu_buf b = FU_BUF_INIT;
    fu_buf_vprintf(&b, fmt, ap);
    struct fu_diag *g = &d->v[d->n++];
    g->sev = sev;
    g->file = file ? strdup(file) : NULL;
    g->line = line;
    g->col = col;
    g->msg = fu_buf_detach(&b);
    if (sev == FU_SEV_ERROR)
        d->n_errors++;
    else
        d->n_warnings++;
}

void fu_diags_add(struct fu_diags *d, enum fu_sev sev, const char *file, int line, int col,
                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fu_diags_vadd(d, sev, file, line, col, fmt, ap);
    va_end(ap);
}

char *fu_diag_format(const struct fu_diag *g)
{
    struct fu_buf b = FU_BUF_INIT;
    if (g->file) {
        fu_buf_puts(&b, g->file);
        if (g->line > 0) {
            fu_buf_printf(&b, ":%d", g->line);
            if (g->col > 0)
                fu_buf_printf(&b, ":%d", g->col);
        }
        fu_buf_puts(&b, ": ");
    }
    fu_buf_puts(&b, g->sev == FU_SEV_ERROR ? "error: " : "warning: ");
    fu_buf_puts(&b, g->msg);
    return fu_buf_detach(&b);
}
