/* The agent's HTTP client; see sender_http.h. */
#include "agent/sender_http.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
    fu_buf_append(ctx, p, size * n);
    return ((struct fu_buf *)ctx)->oom ? 0 : size * n;
}

int fu_hc_init(struct fu_hc *c, const struct fu_strv *uris, const char *key, double timeout_sec)
{
    pthread_once(&global_once, global_init);
    memset(c, 0, sizeof(*c));
    c->curl = curl_easy_init();
    c->key = strdup(key ? key : "");
    c->timeout_ms = timeout_sec > 0 ? (long)(timeout_sec * 1000) : 30000;
    for (size_t i = 0; i < uris->n; i++) {
        size_t l = strlen(uris->v[i]);
        while (l && uris->v[i][l - 1] == '/')
            l--; /* "http://h:1/" and "http://h:1" alike */
        char *u = strndup(uris->v[i], l);
        if (!u || fu_strv_push(&c->uris, u) < 0) {
            free(u);
            fu_hc_free(c);
            return -ENOMEM;
        }
        free(u);
    }
    char *h = malloc(strlen(c->key) + 16);
    if (!c->curl || !c->key || !h || !c->uris.n) {
        free(h);
        fu_hc_free(c);
        return -ENOMEM;
    }
    sprintf(h, "X-API-Key: %s", c->key);
    struct curl_slist *l = curl_slist_append(NULL, h);
    free(h);
    l = l ? curl_slist_append(l, "Content-Type: application/json") : NULL;
    l = l ? curl_slist_append(l, "Expect:") : NULL; /* no 100-continue round trip */
    if (!l) {
        fu_hc_free(c);
        return -ENOMEM;
    }
    c->headers = l;
    return 0;
}

void fu_hc_free(struct fu_hc *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    fu_strv_free(&c->uris);
    free(c->key);
    memset(c, 0, sizeof(*c));
}

long fu_hc_call(struct fu_hc *c, const char *method, const char *path, const char *body, size_t len,
                struct fu_buf *out)
{
    CURL *h = c->curl;
    fu_buf_reset(out);
    const char *base = c->uris.v[c->cur];
    char *url = malloc(strlen(base) + strlen(path) + 1);
    if (!url) {
        snprintf(c->err, sizeof(c->err), "out of memory");
        return -1;
    }
    sprintf(url, "%s%s", base, path);
    curl_easy_reset(h); /* keeps the connection cache: keep-alive */
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, (struct curl_slist *)c->headers);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms < 10000 ? c->timeout_ms : 10000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    CURLcode rc = curl_easy_perform(h);
    free(url);
    if (rc != CURLE_OK) {
        snprintf(c->err, sizeof(c->err), "%s: %s", base, curl_easy_strerror(rc));
        c->cur = (c->cur + 1) % c->uris.n; /* fail over to the next URI */
        return -1;
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (c->sent) {
        long head = 0;
        curl_off_t up = 0;
        curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &head);
        curl_easy_getinfo(h, CURLINFO_SIZE_UPLOAD_T, &up);
        atomic_fetch_add(c->sent, (uint64_t)head + (uint64_t)up);
    }
    return status;
}

double fu_backoff_next(struct fu_backoff *b)
{
    double mult = b->mult > 1 ? b->mult : b->mult == 1 ? 1 : 2;
    double top = b->base;
    for (unsigned i = 0; i < b->failures && top < b->cap; i++) /* stops at the cap: no overflow */
        top *= mult;
    if (top > b->cap)
        top = b->cap;
    b->failures++;
    b->seed = b->seed * 6364136223846793005ull + 1442695040888963407ull;
    return top * (double)(b->seed >> 11) / 9007199254740992.0; /* uniform in [0, top) */
}
