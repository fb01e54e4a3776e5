/* Closed-loop load generator for the benchmarks: C threads, each on its own persistent
 * connection to Fusion's HTTP API (libcurl) or watchman's JSON unix socket, send one query
 * after another for a fixed time; the merged latency percentiles and the throughput come out
 * as one JSON line on stdout.
 * Usage: bench_load [-c N] [-d SECONDS] [-w WARMUP] [-H 'Name: value']... URL
 *        bench_load [-c N] [-d SECONDS] [-w WARMUP] unix:SOCKET 'REQUEST LINE' */
#include <curl/curl.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONCURRENCY 1024
/* A request that makes no progress for this long fails, so a stalled server cannot hang the
 * run past its duration forever. */
#define IDLE_TIMEOUT_S 30
#define READ_MIN (64 * 1024)
/* A unix response that grows past this without a newline is garbage, not a slow answer. */
#define MAX_RESPONSE ((size_t)1 << 30)

/* What every worker shares. The first block is set by main before any worker starts and is
 * read-only afterwards; mu guards ready and go; stop is written by main only. */
struct load_run {
    const char *url;                  /* HTTP mode, else NULL */
    const struct curl_slist *headers; /* owned by main */
    struct sockaddr_un addr;          /* unix mode */
    char *line;                       /* unix mode: REQUEST LINE + '\n', owned by main */
    size_t line_len;
    long warmup;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready; /* workers done with their warm-up */
    int go;    /* measuring has started */
    atomic_int stop;
};

/* One thread's connection and results. Only its thread touches it until it is joined. */
struct load_worker {
    struct load_run *run;
    pthread_t tid;
    int index;
    int failed; /* -errno if the worker could not set up or record, 0 otherwise */

    uint64_t *lat_ns; /* owned, one entry per measured request */
    size_t n, cap;
    uint64_t errors, reconnects, bytes;
    int had_conn; /* the first connection is not a reconnect */

    CURL *curl;         /* HTTP mode, owned */
    uint64_t body;      /* bytes of the current HTTP response body */
    int fd;             /* unix mode, -1 when not connected */
    char *buf;          /* unix mode, owned: received bytes not yet consumed */
    size_t len, bufcap; /* bytes held in buf, its size */
    size_t scan;        /* buf[0..scan) is known to hold no '\n' */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Counts new connections; with persistent connections each thread should make exactly one. */
static void note_connects(struct load_worker *w, long n, int measuring)
{
    if (n > 0 && !w->had_conn) {
        n--;
        w->had_conn = 1;
    }
    if (measuring)
        w->reconnects += (uint64_t)n;
}

static size_t count_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    *(uint64_t *)userdata += size * nmemb;
    return size * nmemb;
}

static int http_setup(struct load_worker *w)
{
    w->curl = curl_easy_init();
    if (!w->curl)
        return -ENOMEM;
    CURL *h = w->curl;
    curl_easy_setopt(h, CURLOPT_URL, w->run->url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, (struct curl_slist *)w->run->headers);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    /* Measure the server, not whatever proxy the environment names. */
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)IDLE_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)IDLE_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, count_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &w->body);
    return 0;
}

/* One GET on the worker's handle; curl keeps the connection open between calls and
 * reconnects by itself when the server closed it. Returns 0 on a 200, -1 otherwise. */
static int http_request(struct load_worker *w, int measuring, uint64_t *ns, uint64_t *bytes)
{
    w->body = 0;
    uint64_t t0 = now_ns();
    CURLcode rc = curl_easy_perform(w->curl);
    *ns = now_ns() - t0;
    long code = 0, conns = 0;
    curl_easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(w->curl, CURLINFO_NUM_CONNECTS, &conns);
    note_connects(w, conns, measuring);
    *bytes = w->body;
    return rc == CURLE_OK && code == 200 ? 0 : -1;
}

static int unix_connect(struct load_worker *w, int measuring)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = {.tv_sec = IDLE_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)&w->run->addr, sizeof(w->run->addr)) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    w->fd = fd;
    note_connects(w, 1, measuring);
    return 0;
}

static void unix_drop(struct load_worker *w)
{
    close(w->fd);
    w->fd = -1;
    w->len = 0;
    w->scan = 0;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Whether KEY (a quoted JSON string) appears as an object key, i.e. followed by ':'. A file
 * name cannot fake this: inside a string value every '"' is escaped, so KEY's closing quote
 * must end a real string, and one followed by ':' is a key. The limitation is depth: a key
 * of that name in a nested object counts too, though watchman's file fields never have one. */
static int has_key(const char *s, size_t n, const char *key)
{
    size_t klen = strlen(key);
    const char *end = s + n;
    for (const char *p = s; (p = memmem(p, (size_t)(end - p), key, klen)) != NULL; p++) {
        const char *q = p + klen;
        while (q < end && (*q == ' ' || *q == '\t'))
            q++;
        if (q < end && *q == ':')
            return 1;
    }
    return 0;
}

/* Watchman answers with one JSON object per line; anything else is garbage. */
static int is_object_line(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    while (n > i && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return n - i >= 2 && s[i] == '{' && s[n - 1] == '}';
}

static void unix_consume(struct load_worker *w, size_t n)
{
    memmove(w->buf, w->buf + n, w->len - n);
    w->len -= n;
    w->scan = 0;
}

/* Sends REQUEST LINE and reads lines until one is not a unilateral message (subscription
 * and log PDUs can arrive between a request and its answer); that line is the response.
 * Bytes past it stay in buf for the next request. Any failure drops the connection, so the
 * next request starts on a fresh one rather than on a half-read stream. */
static int unix_request(struct load_worker *w, int measuring, uint64_t *ns, uint64_t *bytes)
{
    uint64_t t0 = now_ns();
    *bytes = 0;
    if (w->fd < 0 && unix_connect(w, measuring) < 0)
        goto fail;
    if (send_all(w->fd, w->run->line, w->run->line_len) < 0)
        goto drop;
    for (;;) {
        char *nl = memchr(w->buf + w->scan, '\n', w->len - w->scan);
        if (nl) {
            size_t n = (size_t)(nl - w->buf) + 1;
            if (has_key(w->buf, n, "\"unilateral\"")) {
                unix_consume(w, n);
                continue;
            }
            *ns = now_ns() - t0;
            *bytes = n;
            int ok = is_object_line(w->buf, n) && !has_key(w->buf, n, "\"error\"");
            unix_consume(w, n);
            return ok ? 0 : -1;
        }
        w->scan = w->len;
        if (w->bufcap - w->len < READ_MIN) {
            if (w->bufcap >= MAX_RESPONSE)
                goto drop;
            size_t cap = w->bufcap * 2;
            char *p = realloc(w->buf, cap);
            if (!p)
                goto drop;
            w->buf = p;
            w->bufcap = cap;
        }
        ssize_t r = recv(w->fd, w->buf + w->len, w->bufcap - w->len, 0);
        if (r > 0)
            w->len += (size_t)r;
        else if (!(r < 0 && errno == EINTR))
            goto drop; /* closed, timed out or broken */
    }
drop:
    unix_drop(w);
fail:
    *ns = now_ns() - t0;
    return -1;
}

static int request(struct load_worker *w, int measuring, uint64_t *ns, uint64_t *bytes)
{
    if (w->curl)
        return http_request(w, measuring, ns, bytes);
    return unix_request(w, measuring, ns, bytes);
}

static int record(struct load_worker *w, uint64_t ns)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 4096;
        uint64_t *p = realloc(w->lat_ns, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        w->lat_ns = p;
        w->cap = cap;
    }
    w->lat_ns[w->n++] = ns;
    return 0;
}

static void *worker_main(void *arg)
{
    struct load_worker *w = arg;
    struct load_run *run = w->run;
    char name[16];
    snprintf(name, sizeof(name), "load-%d", w->index);
    pthread_setname_np(pthread_self(), name);

    if (run->url) {
        w->failed = http_setup(w);
    } else {
        w->bufcap = READ_MIN * 2;
        w->buf = malloc(w->bufcap);
        if (!w->buf)
            w->failed = -ENOMEM;
    }
    uint64_t ns, bytes;
    for (long i = 0; !w->failed && i < run->warmup && !atomic_load(&run->stop); i++)
        request(w, 0, &ns, &bytes);

    pthread_mutex_lock(&run->mu);
    run->ready++;
    pthread_cond_broadcast(&run->cv);
    while (!run->go)
        pthread_cond_wait(&run->cv, &run->mu);
    pthread_mutex_unlock(&run->mu);

    while (!w->failed && !atomic_load_explicit(&run->stop, memory_order_relaxed)) {
        if (request(w, 1, &ns, &bytes) < 0)
            w->errors++;
        w->bytes += bytes;
        w->failed = record(w, ns);
    }
    return NULL;
}

static void worker_free(struct load_worker *w)
{
    if (w->curl)
        curl_easy_cleanup(w->curl);
    if (w->fd >= 0)
        close(w->fd);
    free(w->buf);
    free(w->lat_ns);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the value at index ceil(p * n) - 1, with p in thousandths so it is exact. */
static double percentile_ms(const uint64_t *sorted, size_t n, unsigned per_mille)
{
    size_t rank = (size_t)(((unsigned long long)per_mille * n + 999) / 1000);
    return (double)sorted[rank - 1] / 1e6;
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_load [-c CONCURRENCY] [-d SECONDS] [-w WARMUP_REQUESTS]"
                    " [-H 'Name: value']... http://HOST:PORT/PATH?QUERY\n"
                    "       bench_load [-c CONCURRENCY] [-d SECONDS] [-w WARMUP_REQUESTS]"
                    " unix:/path/to/socket 'REQUEST LINE'\n");
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    long concurrency = 1, warmup = 2;
    double seconds = 5;
    const char **hdrs = calloc((size_t)argc, sizeof(*hdrs));
    size_t nhdrs = 0;
    if (!hdrs)
        return 1;
    int opt;
    while ((opt = getopt(argc, argv, "c:d:w:H:")) != -1) {
        char *end;
        switch (opt) {
        case 'c':
            if (parse_long(optarg, 1, MAX_CONCURRENCY, &concurrency) < 0)
                goto bad_usage;
            break;
        case 'd':
            errno = 0;
            seconds = strtod(optarg, &end);
            if (errno || end == optarg || *end || !isfinite(seconds) || seconds <= 0 ||
                seconds > 1e6)
                goto bad_usage;
            break;
        case 'w':
            if (parse_long(optarg, 0, INT_MAX, &warmup) < 0)
                goto bad_usage;
            break;
        case 'H':
            if (!strchr(optarg, ':'))
                goto bad_usage;
            hdrs[nhdrs++] = optarg;
            break;
        default:
            goto bad_usage;
        }
    }

    struct load_run run = {.warmup = warmup};
    const char *target = optind < argc ? argv[optind] : NULL;
    if (!target)
        goto bad_usage;
    if (strncmp(target, "unix:", 5) == 0) {
        const char *path = target + 5;
        if (argc - optind != 2 || nhdrs || !*path || strlen(path) >= sizeof(run.addr.sun_path))
            goto bad_usage;
        run.addr.sun_family = AF_UNIX;
        strcpy(run.addr.sun_path, path);
        run.line_len = strlen(argv[optind + 1]) + 1;
        run.line = malloc(run.line_len);
        if (!run.line)
            return 1;
        memcpy(run.line, argv[optind + 1], run.line_len - 1);
        run.line[run.line_len - 1] = '\n';
    } else if (argc - optind == 1 &&
               (strncmp(target, "http://", 7) == 0 || strncmp(target, "https://", 8) == 0)) {
        run.url = target;
    } else {
        goto bad_usage;
    }

    /* A server closing the socket under a write must be an error, not a dead process. */
    signal(SIGPIPE, SIG_IGN);
    struct curl_slist *headers = NULL;
    if (run.url) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            fprintf(stderr, "bench_load: curl_global_init failed\n");
            return 1;
        }
        for (size_t i = 0; i < nhdrs; i++) {
            struct curl_slist *h = curl_slist_append(headers, hdrs[i]);
            if (!h) {
                fprintf(stderr, "bench_load: out of memory\n");
                return 1;
            }
            headers = h;
        }
        run.headers = headers;
    }
    free(hdrs);
    hdrs = NULL;

    pthread_mutex_init(&run.mu, NULL);
    pthread_cond_init(&run.cv, NULL);
    atomic_init(&run.stop, 0);
    struct load_worker *workers = calloc((size_t)concurrency, sizeof(*workers));
    if (!workers) {
        fprintf(stderr, "bench_load: out of memory\n");
        return 1;
    }
    int started = 0, status = 0;
    for (; started < concurrency; started++) {
        struct load_worker *w = &workers[started];
        w->run = &run;
        w->index = started;
        w->fd = -1;
        int err = pthread_create(&w->tid, NULL, worker_main, w);
        if (err) {
            fprintf(stderr, "bench_load: pthread_create: %s\n", strerror(err));
            atomic_store(&run.stop, 1);
            status = 1;
            break;
        }
    }

    /* Warm-up done everywhere: the measuring phase starts for all threads at once. */
    pthread_mutex_lock(&run.mu);
    while (run.ready < started)
        pthread_cond_wait(&run.cv, &run.mu);
    uint64_t t0 = now_ns();
    run.go = 1;
    pthread_cond_broadcast(&run.cv);
    pthread_mutex_unlock(&run.mu);

    if (!status) {
        uint64_t deadline = t0 + (uint64_t)(seconds * 1e9);
        struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000u),
                              .tv_nsec = (long)(deadline % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
    }
    atomic_store(&run.stop, 1);
    size_t total = 0;
    uint64_t errors = 0, reconnects = 0, bytes = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(workers[i].tid, NULL);
        total += workers[i].n;
        errors += workers[i].errors;
        reconnects += workers[i].reconnects;
        bytes += workers[i].bytes;
    }
    /* In-flight requests finish after the stop, and they are counted, so the wall time
     * runs to the last join. */
    double wall = (double)(now_ns() - t0) / 1e9;

    uint64_t *all = malloc((total ? total : 1) * sizeof(*all));
    if (!all) {
        fprintf(stderr, "bench_load: out of memory\n");
        return 1;
    }
    size_t n = 0;
    for (int i = 0; i < started; i++) {
        struct load_worker *w = &workers[i];
        if (w->failed) {
            fprintf(stderr, "bench_load: thread %d stopped: %s\n", i, strerror(-w->failed));
            status = 1;
        }
        memcpy(all + n, w->lat_ns, w->n * sizeof(*all));
        n += w->n;
        worker_free(w);
    }
    qsort(all, n, sizeof(*all), cmp_u64);

    printf("{\"target\":");
    print_json_string(target);
    printf(",\"concurrency\":%ld,\"seconds\":%.3f,\"requests\":%zu,\"errors\":%llu,"
           "\"reconnects\":%llu,\"qps\":%.1f,",
           concurrency, wall, n, (unsigned long long)errors, (unsigned long long)reconnects,
           (double)n / wall);
    if (n)
        printf("\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
               "\"mean_bytes\":%.1f}\n",
               percentile_ms(all, n, 500), percentile_ms(all, n, 900), percentile_ms(all, n, 990),
               (double)all[n - 1] / 1e6, (double)bytes / (double)n);
    else
        printf("\"p50_ms\":null,\"p90_ms\":null,\"p99_ms\":null,\"max_ms\":null,"
               "\"mean_bytes\":null}\n");
    if (errors)
        status = 1;

    free(all);
    free(workers);
    free(run.line);
    pthread_cond_destroy(&run.cv);
    pthread_mutex_destroy(&run.mu);
    if (run.url) {
        curl_slist_free_all(headers);
        curl_global_cleanup();
    }
    return status;

bad_usage:
    usage();
    free(hdrs);
    return 2;
}
