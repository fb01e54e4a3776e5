/* libmicrohttpd glue; see http.h. The body is gathered per connection in the access
 * callback; a body over the limit is dropped as it arrives (no memory is spent on it) and
 * answered with 413 at its end, or at once for a client that asked for 100-continue. */
#include "fusion/http.h"

#include "common/json.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct fu_http_server {
    struct MHD_Daemon *d;
    fu_http_handler h;
    void *ctx;
    size_t max_body;
    int port;
    bool test_time; /* honour X-Fustor-Time (FUSTOR_TEST_TIME=1 in the environment) */
    char name[64];
};

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void fu_http_error(struct fu_http_resp *resp, int status, const char *fmt, ...)
{
    struct fu_buf m = FU_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    fu_buf_vprintf(&m, fmt, ap);
    va_end(ap);
    resp->status = status;
    fu_buf_reset(&resp->body);
    fu_buf_puts(&resp->body, "{\"detail\":");
    fu_json_escape(&resp->body, fu_buf_str(&m), m.len);
    fu_buf_putc(&resp->body, '}');
    fu_buf_free(&m);
}

const char *fu_http_query(const struct fu_http_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *fu_http_header(const struct fu_http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

static enum MHD_Result send_resp(struct MHD_Connection *c, struct fu_http_resp *resp)
{
    if (resp->body.oom) {
        resp->status = 500;
        fu_buf_free(&resp->body);
        fu_buf_puts(&resp->body, "{\"detail\":\"out of memory\"}");
    }
    size_t len = resp->body.len;
    char *data = fu_buf_detach(&resp->body);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (resp->retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", resp->retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result too_big(struct fu_http_server *s, struct MHD_Connection *c)
{
    struct fu_http_resp resp = {0};
    fu_http_error(&resp, 413, "request body larger than %zu bytes", s->max_body);
    return send_resp(c, &resp);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    struct fu_http_server *s = cls;
    struct fu_http_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r)
            return MHD_NO;
        r->recv_time = wall_now();
        r->conn = c;
        *con_cls = r;
        if (s->test_time) { /* FUSTOR_TEST_TIME: a test drives the receive clock */
            const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Fustor-Time");
            char *end;
            double v = t ? strtod(t, &end) : 0;
            if (t && *end == '\0' && v > 0 && v < 1e12)
                r->recv_time = v;
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->max_body) {
            r->too_big = true;
            /* A client waiting for "100 Continue" gets 413 before it sends the body. Others
             * are already sending: the body is read and dropped so that they can read the
             * answer (answering early would make most clients fail with a broken pipe). */
            const char *exp = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Expect");
            if (exp && !strcasecmp(exp, "100-continue"))
                return too_big(s, c);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->too_big) {
            if (r->body.len + *upload_size > s->max_body) {
                r->too_big = true;
                fu_buf_free(&r->body);
            } else {
                fu_buf_append(&r->body, upload, *upload_size);
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->too_big)
        return too_big(s, c);
    r->method = method;
    r->path = url;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->client_ip,
                      sizeof(r->client_ip));
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->client_ip,
                      sizeof(r->client_ip));
    }
    struct fu_http_resp resp = {.status = 200};
    if (r->body.oom)
        fu_http_error(&resp, 413, "request body too large for memory");
    else
        s->h(s->ctx, r, &resp);
    return send_resp(c, &resp);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct fu_http_req *r = *con_cls;
    if (r) {
        fu_buf_free(&r->body);
        free(r);
        *con_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct fu_http_server *s = cls;
    struct fu_buf m = FU_BUF_INIT;
    fu_buf_vprintf(&m, fmt, ap);
    while (m.len && m.data[m.len - 1] == '\n')
        m.data[--m.len] = '\0';
    fu_warn("%s: %s", s->name, fu_buf_str(&m));
    fu_buf_free(&m);
}

int fu_http_start(struct fu_http_server **out, const struct fu_http_opts *o, fu_http_handler h,
                  void *ctx, char *err, size_t errlen)
{
    struct fu_http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->h = h;
    s->ctx = ctx;
    s->max_body = o->max_body;
    const char *tt = getenv("FUSTOR_TEST_TIME");
    s->test_time = tt && !strcmp(tt, "1");
    snprintf(s->name, sizeof(s->name), "%s", o->name ? o->name : "http");
    if (s->test_time)
        fu_warn("%s: FUSTOR_TEST_TIME=1: requests may set their receive time with the "
                "X-Fustor-Time header (for tests only)",
                s->name);

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    const char *host = o->host && *o->host ? o->host : "0.0.0.0";
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)o->port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
            snprintf(err, errlen, "%s: '%s' is not an IPv6 address", s->name, host);
            free(s);
            return -EINVAL;
        }
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)o->port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
            snprintf(err, errlen, "%s: '%s' is not an IPv4 address", s->name, host);
            free(s);
            return -EINVAL;
        }
    }
    errno = 0;
    /* The logger must be the first option, or MHD logs the options before it itself. No
     * SO_REUSEPORT: a second Fusion on the same port must fail, not share the traffic. */
    s->d = MHD_start_daemon(
        flags, (uint16_t)o->port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)(o->threads ? o->threads : 4), MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(o->idle_timeout ? o->idle_timeout : 60), MHD_OPTION_CONNECTION_LIMIT, 4096u,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->d) {
        int e = errno ? errno : EADDRINUSE;
        snprintf(err, errlen, "%s: cannot listen on %s:%d: %s", s->name, host, o->port,
                 strerror(e));
        free(s);
        return -e;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    *out = s;
    return 0;
}

void fu_http_stop(struct fu_http_server *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->d);
    free(s);
}

int fu_http_port(const struct fu_http_server *s)
{
    return s->port;
}
