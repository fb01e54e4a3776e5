/* The view API's reads over the fs tree (Fustor v1 §4.1): nested tree, flat pages, stats,
 * search. Every walk is iterative (an explicit stack of sorted child arrays, or the sibling
 * and parent links), since paths can be 10,000 levels deep. Path order everywhere is
 * pre-order with children sorted by name bytewise, i.e. paths compared component by
 * component; the page cursor is just the last path sent, so resuming needs no server state. */
#include "fusion/view_fs/query.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_MAX 10000

/* ------------------------------------------------------------ small helpers */

static void buf_trunc(struct fu_buf *b, size_t len)
{
    b->len = len;
    if (b->data)
        b->data[len] = '\0';
}

static bool is_dir(const struct fu_tree *t, fu_nid id)
{
    return fu_tree_node(t, id)->flags & FU_N_DIR;
}

/* Whether a directory at `depth` below the query root lists its children; limit < 0 is
 * unlimited. */
static bool expands(const struct fu_tree *t, fu_nid id, int depth, int limit)
{
    return is_dir(t, id) && (limit < 0 || depth < limit);
}

/* v1: max_depth forces recursion; recursive=false alone means the node only. */
static int depth_limit(const struct fu_tree_query *q)
{
    if (q->max_depth >= 0)
        return q->max_depth;
    return q->recursive ? -1 : 0;
}

/* Component-wise bytewise order of two paths: '/' sorts below every name byte (names hold
 * no NUL), and a path sorts before the paths below it. */
static int path_cmp(const char *a, size_t la, const char *b, size_t lb)
{
    size_t n = la < lb ? la : lb;
    for (size_t i = 0; i < n; i++) {
        unsigned ca = (unsigned char)a[i], cb = (unsigned char)b[i];
        if (ca == cb)
            continue;
        if (ca == '/')
            return -1;
        if (cb == '/')
            return 1;
        return ca < cb ? -1 : 1;
    }
    return (la > lb) - (la < lb);
}

/* The node's path into `path`, with the root as the empty string so that a child's path is
 * always parent + "/" + name. */
static void dir_prefix(const struct fu_tree *t, fu_nid id, struct fu_buf *path)
{
    fu_tree_path(t, id, path);
    if (id == FU_NID_ROOT)
        buf_trunc(path, 0);
}

static void append_name(const struct fu_tree *t, fu_nid id, struct fu_buf *path)
{
    size_t len;
    const char *name = fu_tree_name(t, id, &len);
    fu_buf_putc(path, '/');
    fu_buf_append(path, name, len);
}

/* ------------------------------------------------------------ error bodies */

static void detail_body(struct fu_buf *out, const char *msg, const char *arg, size_t arg_len)
{
    struct fu_buf s = FU_BUF_INIT;
    fu_buf_puts(&s, msg);
    if (arg)
        fu_buf_append(&s, arg, arg_len);
    struct fu_jw w;
    fu_jw_init(&w, out);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "detail");
    fu_jw_str(&w, fu_buf_str(&s), s.len);
    fu_jw_obj_end(&w);
    fu_buf_free(&s);
}

static int not_found(struct fu_buf *out, const char *path)
{
    detail_body(out, "Path not found or not yet synced: ", path, strlen(path));
    return 404;
}

static int bad_request(struct fu_buf *out, const char *msg)
{
    detail_body(out, msg, NULL, 0);
    return 400;
}

static int limit_exceeded(struct fu_buf *out, const char *view_id, uint64_t count, int64_t limit)
{
    struct fu_jw w;
    fu_jw_init(&w, out);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "detail");
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "error");
    fu_jw_cstr(&w, "Metadata retrieval limit exceeded");
    fu_jw_ckey(&w, "view");
    fu_jw_cstr(&w, view_id);
    fu_jw_ckey(&w, "current_count");
    fu_jw_uint(&w, count);
    fu_jw_ckey(&w, "limit");
    fu_jw_int(&w, limit);
    fu_jw_ckey(&w, "suggestion");
    fu_jw_cstr(&w, "Try a more specific path or reduce recursion depth.");
    fu_jw_obj_end(&w);
    fu_jw_obj_end(&w);
    return 400;
}

/* Drops whatever a failed call appended and says why. */
static int out_of_memory(struct fu_buf *out, size_t start)
{
    buf_trunc(out, start);
    out->oom = false;
    detail_body(out, "Out of memory", NULL, 0);
    return 500;
}

/* ------------------------------------------------------------ node objects */

/* `path` is the node's full path ("" stands for the root's "/"). */
static void node_write(const struct fu_tree *t, fu_nid id, const char *path, size_t path_len,
                       bool only_path, struct fu_jw *w)
{
    const struct fu_node *n = fu_tree_node(t, id);
    bool dir = n->flags & FU_N_DIR;
    size_t name_len;
    const char *name = fu_tree_name(t, id, &name_len);
    fu_jw_obj_begin(w);
    fu_jw_ckey(w, "name");
    fu_jw_str(w, name, name_len);
    fu_jw_ckey(w, "content_type");
    fu_jw_cstr(w, dir ? "directory" : "file");
    fu_jw_ckey(w, "path");
    if (path_len)
        fu_jw_str(w, path, path_len);
    else
        fu_jw_cstr(w, "/");
    if (only_path)
        return;
    fu_jw_ckey(w, "size");
    fu_jw_uint(w, n->size);
    fu_jw_ckey(w, "modified_time");
    fu_jw_double(w, n->mtime);
    fu_jw_ckey(w, "created_time");
    fu_jw_double(w, n->ctime);
    fu_jw_ckey(w, "integrity_suspect");
    fu_jw_bool(w, n->flags & FU_N_SUSPECT);
    const char *agent, *uri;
    fu_tree_lineage_get(t, n->lineage, &agent, &uri);
    fu_jw_ckey(w, "last_agent_id");
    fu_jw_cstr(w, agent);
    fu_jw_ckey(w, "source_uri");
    fu_jw_cstr(w, uri);
    fu_jw_ckey(w, "agent_missing");
    fu_jw_bool(w, n->flags & FU_N_AGENT_MISSING);
    if (dir) {
        fu_jw_ckey(w, "audit_skipped");
        fu_jw_bool(w, n->flags & FU_N_AUDIT_SKIPPED);
    }
}

void fu_query_node_begin(const struct fu_tree *t, fu_nid id, bool only_path, struct fu_buf *scratch,
                         struct fu_jw *w)
{
    dir_prefix(t, id, scratch);
    node_write(t, id, fu_buf_str(scratch), scratch->len, only_path, w);
}

/* ------------------------------------------------------------ sorted pre-order walk */

/* One directory being listed: its children sorted, the next one to visit, the length of
 * the directory's path in the walk's path buffer, and the depth of the children. */
struct frame {
    fu_nid *kids;
    size_t n, i;
    size_t plen;
    int depth;
};

struct walk {
    const struct fu_tree *t;
    struct frame *v;
    size_t n, cap;
    struct fu_buf path; /* the path of the entry last returned */
    int limit;          /* depth limit, < 0 unlimited */
};

static void walk_init(struct walk *wk, const struct fu_tree *t, int limit)
{
    memset(wk, 0, sizeof(*wk));
    wk->t = t;
    wk->limit = limit;
}

static void walk_free(struct walk *wk)
{
    for (size_t i = 0; i < wk->n; i++)
        free(wk->v[i].kids);
    free(wk->v);
    fu_buf_free(&wk->path);
}

/* Lists `dir`'s children next; its path is the current contents of wk->path and its
 * children are at `depth`. Returns 0 or -ENOMEM. */
static int walk_push(struct walk *wk, fu_nid dir, int depth)
{
    if (wk->n == wk->cap) {
        size_t cap = wk->cap ? wk->cap * 2 : 32;
        struct frame *v = realloc(wk->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        wk->v = v;
        wk->cap = cap;
    }
    fu_nid *kids;
    size_t n = fu_tree_children_sorted(wk->t, dir, &kids);
    if (n == (size_t)-1)
        return -ENOMEM;
    wk->v[wk->n++] = (struct frame){kids, n, 0, wk->path.len, depth};
    return 0;
}

static void walk_pop(struct walk *wk)
{
    free(wk->v[--wk->n].kids);
}

/* The next entry in pre-order into *id, *depth and wk->path, listing the children of
 * directories within the depth limit. Returns 1, 0 at the end, or -ENOMEM. */
static int walk_next(struct walk *wk, fu_nid *id, int *depth)
{
    while (wk->n && wk->v[wk->n - 1].i == wk->v[wk->n - 1].n)
        walk_pop(wk);
    if (!wk->n)
        return 0;
    struct frame *f = &wk->v[wk->n - 1];
    fu_nid c = f->kids[f->i++];
    int d = f->depth;
    buf_trunc(&wk->path, f->plen);
    append_name(wk->t, c, &wk->path);
    if (wk->path.oom)
        return -ENOMEM;
    if (expands(wk->t, c, d, wk->limit) && walk_push(wk, c, d + 1) < 0)
        return -ENOMEM;
    *id = c;
    *depth = d;
    return 1;
}

static bool walk_has_more(const struct walk *wk)
{
    for (size_t i = 0; i < wk->n; i++)
        if (wk->v[i].i < wk->v[i].n)
            return true;
    return false;
}

/* Positions the walk (rooted at `top`, whose path is in wk->path) so that walk_next returns
 * the first entry after `after` in path order, whether or not `after` exists. `rel` is
 * `after` with top's path removed: "" for top itself, else "/c1/c2...". */
static int walk_seek(struct walk *wk, fu_nid top, const char *rel, size_t rel_len)
{
    fu_nid cur = top;
    int depth = 0;
    size_t i = 0;
    for (;;) {
        if (i >= rel_len) { /* `after` is cur itself: its children come next */
            if (expands(wk->t, cur, depth, wk->limit))
                return walk_push(wk, cur, depth + 1);
            return 0;
        }
        if (!expands(wk->t, cur, depth, wk->limit))
            return 0; /* nothing below cur is listed: carry on after it */
        i++;          /* the '/' */
        size_t s = i;
        while (i < rel_len && rel[i] != '/')
            i++;
        if (walk_push(wk, cur, depth + 1) < 0)
            return -ENOMEM;
        struct frame *f = &wk->v[wk->n - 1];
        size_t lo = 0, hi = f->n; /* the first child whose name is >= the component */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2, l;
            const char *name = fu_tree_name(wk->t, f->kids[mid], &l);
            if (fu_bytes_cmp(name, l, rel + s, i - s) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        f->i = lo;
        if (lo == f->n)
            return 0;
        size_t l;
        const char *name = fu_tree_name(wk->t, f->kids[lo], &l);
        if (fu_bytes_cmp(name, l, rel + s, i - s) != 0)
            return 0; /* `after` is gone: its next sibling is next */
        f->i = lo + 1;
        cur = f->kids[lo];
        depth++;
        append_name(wk->t, cur, &wk->path);
        if (wk->path.oom)
            return -ENOMEM;
    }
}

/* ------------------------------------------------------------ counting */

/* Entries a depth-limited listing of `top` holds, counting no further than cap + 1. Walks
 * the sibling and parent links: no allocation, no sorting. */
static uint64_t count_limited(const struct fu_tree *t, fu_nid top, int limit, uint64_t cap)
{
    uint64_t count = 1;
    if (!expands(t, top, 0, limit))
        return count;
    fu_nid cur = top, c = fu_tree_first_child(t, top);
    int depth = 0; /* of cur */
    for (;;) {
        if (c == FU_NID_NONE) {
            if (cur == top)
                return count;
            c = fu_tree_node(t, cur)->next;
            cur = fu_tree_node(t, cur)->parent;
            depth--;
            continue;
        }
        if (++count > cap)
            return count;
        if (expands(t, c, depth + 1, limit)) {
            cur = c;
            depth++;
            c = fu_tree_first_child(t, c);
        } else {
            c = fu_tree_node(t, c)->next;
        }
    }
}

/* ------------------------------------------------------------ GET /tree */

/* The limit counts the entries of this response (v1 counted the whole view): exactly, and in
 * O(1), for an unlimited listing; for a depth-limited one by a walk that stops at limit + 1,
 * so current_count is then a lower bound. Out of memory gives 500 {"detail":...}. */
int fu_query_tree(const struct fu_tree *t, const struct fu_tree_query *q, struct fu_buf *out)
{
    fu_nid top = fu_tree_lookup(t, q->path, strlen(q->path));
    if (top == FU_NID_NONE)
        return not_found(out, q->path);
    int limit = depth_limit(q);
    if (q->max_items > 0) {
        uint64_t cap = (uint64_t)q->max_items, count = 1;
        if (is_dir(t, top)) {
            const struct fu_agg *g = fu_tree_agg(t, top);
            count = 1 + g->files + g->dirs; /* the whole subtree: exact when unlimited */
        }
        if (count > cap && limit >= 0)
            count = count_limited(t, top, limit, cap); /* a lower bound once over cap */
        if (count > cap)
            return limit_exceeded(out, q->view_id, count, q->max_items);
    }

    size_t start = out->len;
    struct walk wk;
    walk_init(&wk, t, limit);
    struct fu_jw w;
    fu_jw_init(&w, out);
    dir_prefix(t, top, &wk.path);
    node_write(t, top, fu_buf_str(&wk.path), wk.path.len, q->only_path, &w);
    int rc = 0;
    if (is_dir(t, top)) {
        fu_jw_ckey(&w, "children");
        fu_jw_arr_begin(&w);
        if (expands(t, top, 0, limit))
            rc = walk_push(&wk, top, 1);
        else
            fu_jw_arr_end(&w);
    }
    if (!wk.n)
        fu_jw_obj_end(&w);
    /* Each frame is an open "children" array inside an open object. */
    while (rc == 0 && wk.n) {
        struct frame *f = &wk.v[wk.n - 1];
        if (f->i == f->n) {
            walk_pop(&wk);
            fu_jw_arr_end(&w);
            fu_jw_obj_end(&w);
            continue;
        }
        fu_nid c = f->kids[f->i++];
        int d = f->depth;
        buf_trunc(&wk.path, f->plen);
        append_name(t, c, &wk.path);
        node_write(t, c, fu_buf_str(&wk.path), wk.path.len, q->only_path, &w);
        if (is_dir(t, c)) {
            fu_jw_ckey(&w, "children");
            fu_jw_arr_begin(&w);
            if (expands(t, c, d, limit)) {
                rc = walk_push(&wk, c, d + 1);
                continue;
            }
            fu_jw_arr_end(&w);
        }
        fu_jw_obj_end(&w);
    }
    bool oom = rc < 0 || wk.path.oom || out->oom;
    walk_free(&wk);
    return oom ? out_of_memory(out, start) : 200;
}

/* ------------------------------------------------------------ GET /tree?entry_page_size */

/* The cursor is the last path sent, base64url without padding: opaque to clients, safe in a
 * query string, and decodable without any server state. */
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void cursor_encode(struct fu_jw *w, const char *p, size_t n, struct fu_buf *tmp)
{
    fu_buf_reset(tmp);
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)p[i] << 16 | (uint32_t)(unsigned char)p[i + 1] << 8 |
                     (unsigned char)p[i + 2];
        char o[4] = {b64url[v >> 18], b64url[(v >> 12) & 63], b64url[(v >> 6) & 63],
                     b64url[v & 63]};
        fu_buf_append(tmp, o, 4);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)(unsigned char)p[i] << 16;
        char o[2] = {b64url[v >> 18], b64url[(v >> 12) & 63]};
        fu_buf_append(tmp, o, 2);
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)(unsigned char)p[i] << 16 | (uint32_t)(unsigned char)p[i + 1] << 8;
        char o[3] = {b64url[v >> 18], b64url[(v >> 12) & 63], b64url[(v >> 6) & 63]};
        fu_buf_append(tmp, o, 3);
    }
    fu_jw_str(w, fu_buf_str(tmp), tmp->len);
}

static int b64url_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Returns 0, or -EINVAL for text that is not canonical unpadded base64url. */
static int cursor_decode(const char *s, struct fu_buf *out)
{
    size_t n = strlen(s);
    if (n % 4 == 1)
        return -EINVAL;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val(s[i]);
        if (v < 0)
            return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            fu_buf_putc(out, (char)(acc >> bits));
            acc &= (1u << bits) - 1;
        }
    }
    if (acc) /* leftover bits must be zero, so each path has one cursor */
        return -EINVAL;
    return out->oom ? -ENOMEM : 0;
}

/* Whether `p` is a normalised path at or below `top` ("" for the root). */
static bool cursor_path_ok(const char *p, size_t n, const char *top, size_t top_len)
{
    if (n == 0 || p[0] != '/' || memchr(p, '\0', n))
        return false;
    if (n > 1) { /* no empty, "." or ".." components and no trailing '/' */
        for (size_t i = 0; i < n;) {
            size_t s = ++i;
            while (i < n && p[i] != '/')
                i++;
            size_t l = i - s;
            if (l == 0 || (l == 1 && p[s] == '.') || (l == 2 && p[s] == '.' && p[s + 1] == '.'))
                return false;
        }
    }
    if (top_len == 0)
        return true;
    return n >= top_len && !memcmp(p, top, top_len) && (n == top_len || p[top_len] == '/');
}

/* q->max_items does not apply: a page holds at most PAGE_MAX entries, and paging is what
 * the limit's suggestion asks clients to do. A cursor is valid if it decodes to a normalised
 * path at or below q->path; the entry it names need not exist any more. */
int fu_query_tree_page(const struct fu_tree *t, const struct fu_tree_query *q, size_t page_size,
                       const char *cursor, struct fu_buf *out)
{
    if (page_size < 1 || page_size > PAGE_MAX)
        return bad_request(out, "entry_page_size must be between 1 and 10000");
    fu_nid top = fu_tree_lookup(t, q->path, strlen(q->path));
    if (top == FU_NID_NONE)
        return not_found(out, q->path);

    size_t start = out->len;
    int rc = 0, status = 200;
    struct walk wk;
    walk_init(&wk, t, depth_limit(q));
    struct fu_buf top_path = FU_BUF_INIT, after = FU_BUF_INIT, tmp = FU_BUF_INIT;
    dir_prefix(t, top, &top_path);
    fu_buf_append(&wk.path, fu_buf_str(&top_path), top_path.len);
    if (top_path.oom || wk.path.oom) {
        rc = -ENOMEM;
        goto done;
    }
    if (cursor) {
        rc = cursor_decode(cursor, &after);
        if (rc == -EINVAL || (rc == 0 && !cursor_path_ok(fu_buf_str(&after), after.len,
                                                         fu_buf_str(&top_path), top_path.len))) {
            rc = 0;
            status = bad_request(out, "Invalid cursor");
            goto done;
        }
        if (rc == 0) {
            /* The path below top: "" for top itself, else "/c1/c2..." */
            size_t skip = after.len == 1 ? 1 : top_path.len;
            rc = walk_seek(&wk, top, fu_buf_str(&after) + skip, after.len - skip);
        }
        if (rc < 0)
            goto done;
    }

    struct fu_jw w;
    fu_jw_init(&w, out);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "path");
    if (top_path.len)
        fu_jw_str(&w, fu_buf_str(&top_path), top_path.len);
    else
        fu_jw_cstr(&w, "/");
    fu_jw_ckey(&w, "entries");
    fu_jw_arr_begin(&w);
    size_t sent = 0;
    if (!cursor) {
        node_write(t, top, fu_buf_str(&wk.path), wk.path.len, q->only_path, &w);
        fu_jw_obj_end(&w);
        sent++;
        if (expands(t, top, 0, wk.limit))
            rc = walk_push(&wk, top, 1);
    }
    while (rc == 0 && sent < page_size) {
        fu_nid id;
        int depth;
        rc = walk_next(&wk, &id, &depth);
        if (rc <= 0)
            break;
        rc = 0;
        node_write(t, id, fu_buf_str(&wk.path), wk.path.len, q->only_path, &w);
        fu_jw_obj_end(&w);
        sent++;
    }
    if (rc < 0)
        goto done;
    fu_jw_arr_end(&w);
    fu_jw_ckey(&w, "next_cursor");
    if (sent == page_size && walk_has_more(&wk))
        cursor_encode(&w, wk.path.len ? wk.path.data : "/", wk.path.len ? wk.path.len : 1, &tmp);
    else
        fu_jw_null(&w);
    fu_jw_obj_end(&w);

done:
    walk_free(&wk);
    fu_buf_free(&top_path);
    fu_buf_free(&after);
    fu_buf_free(&tmp);
    if (rc < 0 || (status == 200 && out->oom))
        return out_of_memory(out, start);
    return status;
}

/* ------------------------------------------------------------ GET /stats */

/* Counts are of what lies below `path`, the directory itself excluded (the root of an empty
 * view has item_count 0), so item_count = total_files + total_directories. A file counts as
 * itself: item_count 1, total_files 1, its own size, suspect flag and mtime. */
int fu_query_stats(const struct fu_tree *t, const char *path, const struct fu_stats_extra *x,
                   struct fu_buf *out)
{
    fu_nid id = fu_tree_lookup(t, path, strlen(path));
    if (id == FU_NID_NONE)
        return not_found(out, path);
    const struct fu_node *n = fu_tree_node(t, id);
    uint64_t files, dirs, bytes, suspects;
    double newest;
    fu_nid oldest = FU_NID_NONE;
    if (n->flags & FU_N_DIR) {
        const struct fu_agg *g = fu_tree_agg(t, id);
        oldest = g->oldest_dir;
        files = g->files;
        dirs = g->dirs;
        bytes = g->bytes;
        suspects = g->suspects;
        newest = g->newest_mtime;
    } else {
        files = 1;
        dirs = 0;
        bytes = n->size;
        suspects = (n->flags & FU_N_SUSPECT) != 0;
        newest = n->mtime;
    }
    size_t start = out->len;
    bool oom = false;
    struct fu_buf p = FU_BUF_INIT;
    fu_tree_path(t, id, &p);
    struct fu_jw w;
    fu_jw_init(&w, out);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "item_count");
    fu_jw_uint(&w, files + dirs);
    fu_jw_ckey(&w, "total_files");
    fu_jw_uint(&w, files);
    fu_jw_ckey(&w, "total_directories");
    fu_jw_uint(&w, dirs);
    fu_jw_ckey(&w, "total_size");
    fu_jw_uint(&w, bytes);
    fu_jw_ckey(&w, "suspect_file_count");
    fu_jw_uint(&w, suspects);
    fu_jw_ckey(&w, "latest_mtime");
    fu_jw_double(&w, newest);
    /* v1: how far the oldest directory lags the view's clock, and which it is. */
    fu_jw_ckey(&w, "staleness_seconds");
    if (oldest != FU_NID_NONE)
        fu_jw_double(&w, x->logical_now - fu_tree_node(t, oldest)->mtime);
    else
        fu_jw_null(&w);
    fu_jw_ckey(&w, "oldest_item_path");
    if (oldest != FU_NID_NONE) {
        struct fu_buf op = FU_BUF_INIT;
        fu_tree_path(t, oldest, &op);
        fu_jw_str(&w, fu_buf_str(&op), op.len);
        oom |= op.oom;
        fu_buf_free(&op);
    } else {
        fu_jw_null(&w);
    }
    fu_jw_ckey(&w, "has_blind_spot");
    fu_jw_bool(&w, x->has_blind_spot);
    fu_jw_ckey(&w, "latency_ms");
    fu_jw_double(&w, x->latency_ms);
    fu_jw_ckey(&w, "logical_now");
    fu_jw_double(&w, x->logical_now);
    fu_jw_ckey(&w, "last_audit_finished_at");
    if (x->last_audit_finished_at > 0)
        fu_jw_double(&w, x->last_audit_finished_at);
    else
        fu_jw_null(&w);
    fu_jw_ckey(&w, "audit_cycle_count");
    fu_jw_uint(&w, x->audit_cycle_count);
    fu_jw_ckey(&w, "is_auditing");
    fu_jw_bool(&w, x->is_auditing);
    fu_jw_ckey(&w, "resyncing");
    fu_jw_bool(&w, x->resyncing);
    fu_jw_ckey(&w, "restored");
    fu_jw_bool(&w, x->restored);
    if (x->journaled) {
        fu_jw_ckey(&w, "journal_position");
        fu_jw_uint(&w, x->journal_position);
        if (x->synced_known) {
            fu_jw_ckey(&w, "journal_synced_position");
            fu_jw_uint(&w, x->journal_synced);
        }
    }
    fu_jw_ckey(&w, "path");
    fu_jw_str(&w, fu_buf_str(&p), p.len);
    fu_jw_obj_end(&w);
    oom |= p.oom || out->oom;
    fu_buf_free(&p);
    return oom ? out_of_memory(out, start) : 200;
}

/* ------------------------------------------------------------ GET /search */

struct match {
    fu_nid id;
    size_t off, len; /* the path in the match path buffer */
};

static int match_cmp(const void *a, const void *b, void *ctx)
{
    const struct match *x = a, *y = b;
    const char *base = ctx;
    return path_cmp(base + x->off, x->len, base + y->off, y->len);
}

/* v1: fnmatchcase(path, p) or fnmatchcase(name, p) or p.lower() in name.lower(); the case
 * folding here is ASCII only. `path` and `name` are NUL-terminated (name is path's tail). */
static bool search_match(const char *pattern, const char *path, const char *name)
{
    return fnmatch(pattern, path, 0) == 0 || fnmatch(pattern, name, 0) == 0 ||
           strcasestr(name, pattern) != NULL;
}

int fu_query_search(const struct fu_tree *t, const char *pattern, int64_t max_items,
                    const char *view_id, struct fu_buf *out)
{
    size_t start = out->len;
    struct fu_buf path = FU_BUF_INIT, paths = FU_BUF_INIT;
    struct match *m = NULL;
    size_t nm = 0, cap = 0;
    bool oom = false, over = false;

    /* Every file, unsorted, by the sibling and parent links; `path` follows the walk. */
    fu_nid cur = FU_NID_ROOT, c = fu_tree_first_child(t, FU_NID_ROOT);
    while (!oom && !over) {
        if (c == FU_NID_NONE) {
            if (cur == FU_NID_ROOT)
                break;
            size_t name_len;
            fu_tree_name(t, cur, &name_len);
            buf_trunc(&path, path.len - 1 - name_len);
            c = fu_tree_node(t, cur)->next;
            cur = fu_tree_node(t, cur)->parent;
            continue;
        }
        size_t plen = path.len;
        append_name(t, c, &path);
        if (path.oom) {
            oom = true;
            break;
        }
        if (is_dir(t, c)) {
            cur = c;
            c = fu_tree_first_child(t, c);
            continue;
        }
        const char *name = path.data + plen + 1;
        if (search_match(pattern, path.data, name)) {
            if (nm == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                struct match *v = realloc(m, ncap * sizeof(*v));
                if (!v) {
                    oom = true;
                    break;
                }
                m = v;
                cap = ncap;
            }
            m[nm++] = (struct match){c, paths.len, path.len};
            fu_buf_append(&paths, path.data, path.len);
            oom = paths.oom;
            if (max_items > 0 && nm > (uint64_t)max_items)
                over = true; /* current_count is then limit + 1: a lower bound */
        }
        buf_trunc(&path, plen);
        c = fu_tree_node(t, c)->next;
    }

    int status = 200;
    if (over) {
        status = limit_exceeded(out, view_id, nm, max_items);
    } else if (!oom) {
        if (nm > 1)
            qsort_r(m, nm, sizeof(*m), match_cmp, paths.data);
        struct fu_jw w;
        fu_jw_init(&w, out);
        fu_jw_arr_begin(&w);
        for (size_t i = 0; i < nm; i++) {
            node_write(t, m[i].id, paths.data + m[i].off, m[i].len, false, &w);
            fu_jw_obj_end(&w);
        }
        fu_jw_arr_end(&w);
    }
    free(m);
    fu_buf_free(&path);
    fu_buf_free(&paths);
    if (oom || out->oom)
        return out_of_memory(out, start);
    return status;
}
