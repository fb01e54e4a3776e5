/* The agent's HTTP client to Fusion (sender `fusion`, alias `http`): libcurl with keep-alive,
 * the API key on every request, a timeout, and fail-over along the configured URIs in order.
 * One client per thread (a libcurl easy handle is not shared). */
#ifndef FU_AGENT_SENDER_HTTP_H
#define FU_AGENT_SENDER_HTTP_H

#include "common/buf.h"
#include "common/strv.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fu_hc {
    void *curl; /* CURL * */
    struct fu_strv uris;
    size_t cur; /* the URI in use; a transport failure moves to the next */
    char *key;
    long timeout_ms;
    void *headers; /* struct curl_slist * */
    char err[256];
    _Atomic uint64_t *sent; /* optional: adds the bytes of each request that got through */
};

/* `uris`: base URLs ("http://host:port"), tried in order. Returns 0 or -ENOMEM. */
int fu_hc_init(struct fu_hc *c, const struct fu_strv *uris, const char *key, double timeout_sec);
void fu_hc_free(struct fu_hc *c);

/* `method` `path` (below the base URL) with an optional JSON body. Returns the HTTP status
 * with the body in `out`, or -1 when the request did not get through (c->err says why; the
 * next call uses the next URI). */
long fu_hc_call(struct fu_hc *c, const char *method, const char *path, const char *body, size_t len,
                struct fu_buf *out);

/* Exponential backoff with full jitter: each delay is uniform in [0, min(cap, base * mult^n)),
 * n counting the failures in a row (mult 0 means 2); a success resets it. `seed` makes it
 * reproducible. */
struct fu_backoff {
    double base, cap;
    unsigned failures;
    uint64_t seed;
    double mult;
};
double fu_backoff_next(struct fu_backoff *b);
static inline void fu_backoff_reset(struct fu_backoff *b)
{
    b->failures = 0;
}

#endif
