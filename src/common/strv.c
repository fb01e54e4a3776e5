/* String vector; see strv.h. */
#include "common/strv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void fu_strv_free(struct fu_strv *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->v[i]);
    free(v->v);
    v->v = NULL;
    v->n = 0;
}

int fu_strv_push(struct fu_strv *v, const char *s)
{
    char *d = strdup(s);
    char **nv = d ? realloc(v->v, (v->n + 1) * sizeof(*nv)) : NULL;
    if (!nv) {
        free(d);
        return -ENOMEM;
    }
    v->v = nv;
    v->v[v->n++] = d;
    return 0;
}

bool fu_strv_has(const struct fu_strv *v, const char *s)
{
    for (size_t i = 0; i < v->n; i++)
        if (!strcmp(v->v[i], s))
            return true;
    return false;
}
