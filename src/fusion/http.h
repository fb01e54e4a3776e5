/* A small HTTP server over libmicrohttpd: a listener with a thread pool (epoll), keep-alive,
 * an idle timeout, a request body limit (413 beyond it), and a handler that sees the whole
 * request body at once and answers with a status and a JSON body. */
#ifndef FU_HTTP_H
#define FU_HTTP_H

#include "common/buf.h"

#include <stdbool.h>
#include <stddef.h>

struct MHD_Connection;

struct fu_http_req {
    const char *method;
    const char *path; /* the URL path, without the query */
    struct MHD_Connection *conn;
    struct fu_buf body;
    double recv_time; /* wall clock when the request arrived: the batch's receive stamp */
    char client_ip[64];
    bool too_big; /* private */
};

struct fu_http_resp {
    int status;
    struct fu_buf body; /* JSON */
    int retry_after;    /* seconds; 0 = no Retry-After header */
};

typedef void (*fu_http_handler)(void *ctx, struct fu_http_req *req, struct fu_http_resp *resp);

struct fu_http_opts {
    const char *host; /* "0.0.0.0", "127.0.0.1", "::" ... */
    int port;
    size_t max_body;       /* bytes; larger bodies get 413 */
    unsigned threads;      /* thread pool size */
    unsigned idle_timeout; /* seconds a connection may sit idle or stall mid-request */
    const char *name;      /* for logs: "api", "receiver http-main" */
};

struct fu_http_server;

/* Binds and starts serving. 0, or -errno with a message in err. */
int fu_http_start(struct fu_http_server **out, const struct fu_http_opts *o, fu_http_handler h,
                  void *ctx, char *err, size_t errlen);
/* Stops accepting, finishes in-flight requests, frees. NULL is fine. */
void fu_http_stop(struct fu_http_server *s);
/* The port actually bound (for port 0). */
int fu_http_port(const struct fu_http_server *s);

const char *fu_http_query(const struct fu_http_req *r, const char *key);
const char *fu_http_header(const struct fu_http_req *r, const char *name);

/* {"detail": msg} with the status. */
void fu_http_error(struct fu_http_resp *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
