/* The management API under /api/v1/management/ (v1's management plane, §6.3): the agents
 * connected now, the config each reported, and commands for them; and snapshots of the views
 * on demand. Commands travel the reverse channel v1 uses: queued on a session, delivered once
 * in its next heartbeat reply.
 * Every route needs `X-Management-Key` equal to `management_api_key`; without that key in
 * the config the API is off (403), never open. */
#include "fusion/fusion.h"

#include "common/fsutil.h"
#include "common/json.h"
#include "common/log.h"
#include "fusion/snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PREFIX "/api/v1/management/"

static bool authorized(struct fu_fusion *f, struct fu_http_req *req, struct fu_http_resp *resp)
{
    if (!f->management_key) {
        fu_http_error(resp, 403,
                      "the management API is disabled: set management_api_key in the Fusion "
                      "config");
        return false;
    }
    const char *key = fu_http_header(req, "X-Management-Key");
    if (!key || !*key) {
        fu_http_error(resp, 401, "X-Management-Key header is missing");
        return false;
    }
    if (!fu_key_equal(key, f->management_key)) {
        fu_http_error(resp, 401, "Invalid X-Management-Key");
        return false;
    }
    return true;
}

static void session_json(struct fu_jw *w, const struct fu_session *s)
{
    fu_jw_obj_begin(w);
    fu_jw_ckey(w, "session_id");
    fu_jw_cstr(w, s->id);
    fu_jw_ckey(w, "task_id");
    fu_jw_cstr(w, s->task_id);
    fu_jw_ckey(w, "pipe_id");
    fu_jw_cstr(w, s->pipe->id);
    fu_jw_ckey(w, "role");
    fu_jw_cstr(w, fu_session_leads(s) ? "leader" : "follower");
    fu_jw_ckey(w, "client_ip");
    fu_jw_cstr(w, s->client_ip);
    fu_jw_ckey(w, "source_uri");
    fu_jw_cstr(w, s->source_uri);
    fu_jw_ckey(w, "agent_status");
    fu_jw_json(w, s->agent_status);
    fu_jw_ckey(w, "config_file");
    fu_jw_cstr(w, s->reported_config_file); /* NULL: null */
    fu_jw_ckey(w, "commands_queued");
    fu_jw_uint(w, s->commands.n);
    fu_jw_obj_end(w);
}

/* GET agents: the connected agents, each with its sessions. */
static void agents(struct fu_fusion *f, struct fu_http_resp *resp)
{
    struct fu_jw w;
    fu_jw_init(&w, &resp->body);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "agents");
    fu_jw_arr_begin(&w);
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->nsessions; i++) {
        const char *id = f->sessions[i]->agent_id;
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = !strcmp(f->sessions[k]->agent_id, id);
        if (seen)
            continue; /* listed with its first session */
        fu_jw_obj_begin(&w);
        fu_jw_ckey(&w, "agent_id");
        fu_jw_cstr(&w, id);
        fu_jw_ckey(&w, "sessions");
        fu_jw_arr_begin(&w);
        for (size_t k = i; k < f->nsessions; k++)
            if (!strcmp(f->sessions[k]->agent_id, id))
                session_json(&w, f->sessions[k]);
        fu_jw_arr_end(&w);
        fu_jw_obj_end(&w);
    }
    pthread_mutex_unlock(&f->mu);
    fu_jw_arr_end(&w);
    fu_jw_obj_end(&w);
}

/* GET agents/{id}/config: what each session of the agent reported (config_report). */
static void agent_config(struct fu_fusion *f, const char *agent, struct fu_http_resp *resp)
{
    struct fu_jw w;
    fu_jw_init(&w, &resp->body);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "agent_id");
    fu_jw_cstr(&w, agent);
    fu_jw_ckey(&w, "configs");
    fu_jw_arr_begin(&w);
    size_t n = 0;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->nsessions; i++) {
        const struct fu_session *s = f->sessions[i];
        if (strcmp(s->agent_id, agent))
            continue;
        n++;
        fu_jw_obj_begin(&w);
        fu_jw_ckey(&w, "session_id");
        fu_jw_cstr(&w, s->id);
        fu_jw_ckey(&w, "task_id");
        fu_jw_cstr(&w, s->task_id);
        fu_jw_ckey(&w, "filename");
        fu_jw_cstr(&w, s->reported_config_file);
        fu_jw_ckey(&w, "config_yaml");
        fu_jw_cstr(&w, s->reported_config);
        fu_jw_obj_end(&w);
    }
    pthread_mutex_unlock(&f->mu);
    fu_jw_arr_end(&w);
    fu_jw_obj_end(&w);
    if (!n) {
        fu_buf_reset(&resp->body);
        fu_http_error(resp, 404, "no live session of agent '%s'", agent);
    }
}

/* A command's fields, each a string. */
struct command {
    char *type, *pipe_id, *filename, *yaml;
};

static void command_free(struct command *c)
{
    free(c->type);
    free(c->pipe_id);
    free(c->filename);
    free(c->yaml);
}

/* Parses the body: an object with `type` and the fields that type takes (v1 §2.10). 0, or
 * the error answered. */
static int parse_command(struct fu_http_req *req, struct command *c, struct fu_http_resp *resp)
{
    struct fu_jr r;
    fu_jr_init(&r, fu_buf_str(&req->body), req->body.len);
    enum fu_json_tok t = fu_jr_next(&r);
    int rc = 0;
    if (t != FU_JSON_OBJ_BEGIN) {
        if (t == FU_JSON_ERROR)
            fu_http_error(resp, 400, "malformed JSON body: %s at byte %zu", r.err_msg, r.err_off);
        else
            fu_http_error(resp, 400, "expected a JSON object: {\"type\": ...}");
        rc = -1;
    }
    while (!rc && (t = fu_jr_next(&r)) == FU_JSON_KEY) {
        char key[32];
        size_t kl = r.str_len < sizeof(key) - 1 ? r.str_len : sizeof(key) - 1;
        memcpy(key, r.str, kl);
        key[kl] = '\0';
        char **slot = !strcmp(key, "type")                                       ? &c->type
                      : !strcmp(key, "agent_pipe_id") || !strcmp(key, "pipe_id") ? &c->pipe_id
                      : !strcmp(key, "filename")                                 ? &c->filename
                      : !strcmp(key, "config_yaml")                              ? &c->yaml
                                                                                 : NULL;
        if (!slot || r.str_len != kl) {
            fu_http_error(resp, 400, "unknown field '%s' in a command", key);
            rc = -1;
            break;
        }
        t = fu_jr_next(&r);
        if (t != FU_JSON_STRING || memchr(r.str, '\0', r.str_len)) {
            fu_http_error(resp, 400, "'%s' must be a string without NUL", key);
            rc = -1;
            break;
        }
        free(*slot);
        *slot = strndup(r.str, r.str_len);
    }
    if (!rc && t == FU_JSON_OBJ_END)
        t = fu_jr_next(&r);
    if (!rc && t != FU_JSON_EOF) {
        fu_http_error(resp, 400, "malformed JSON body: %s at byte %zu",
                      r.err_msg ? r.err_msg : "unexpected content", r.err_off);
        rc = -1;
    }
    fu_jr_free(&r);
    if (rc)
        return rc;
    static const char *const types[] = {"reload_config", "stop_pipe", "report_config",
                                        "update_config"};
    bool known = false;
    for (size_t i = 0; c->type && i < sizeof(types) / sizeof(types[0]); i++)
        known |= !strcmp(c->type, types[i]);
    if (!known) {
        fu_http_error(resp, 400,
                      "type must be reload_config, stop_pipe, report_config or update_config "
                      "(on-demand scans come from GET /api/v1/views/{view}/tree?on_demand_scan="
                      "true)");
        return -1;
    }
    if (!strcmp(c->type, "stop_pipe") && (!c->pipe_id || !*c->pipe_id)) {
        fu_http_error(resp, 400, "stop_pipe needs agent_pipe_id: the agent's pipe to stop");
        return -1;
    }
    if (!strcmp(c->type, "update_config") && (!c->yaml || !*c->yaml)) {
        fu_http_error(resp, 400, "update_config needs config_yaml: the new file's text");
        return -1;
    }
    if (c->filename && !fu_config_file_name_ok(c->filename)) {
        fu_http_error(resp, 400,
                      "filename must be a plain name in the agent's config dir ending in .yaml "
                      "or .yml");
        return -1;
    }
    return 0;
}

/* POST agents/{id}/command: queued on the session of the agent's pipe for stop_pipe, and on
 * the agent's oldest session for the others (one agent, one reload). */
static void command(struct fu_fusion *f, const char *agent, struct fu_http_req *req,
                    struct fu_http_resp *resp)
{
    if (strcmp(req->method, "POST")) {
        fu_http_error(resp, 405, "use POST");
        return;
    }
    struct command c = {0};
    if (parse_command(req, &c, resp) < 0) {
        command_free(&c);
        return;
    }
    struct fu_buf cmd = FU_BUF_INIT;
    struct fu_jw w;
    fu_jw_init(&w, &cmd);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "type");
    fu_jw_cstr(&w, c.type);
    if (c.pipe_id) {
        fu_jw_ckey(&w, "agent_pipe_id");
        fu_jw_cstr(&w, c.pipe_id);
    }
    if (c.filename) {
        fu_jw_ckey(&w, "filename");
        fu_jw_cstr(&w, c.filename);
    }
    if (c.yaml) {
        fu_jw_ckey(&w, "config_yaml");
        fu_jw_cstr(&w, c.yaml);
    }
    fu_jw_ckey(&w, "created_at");
    fu_jw_double(&w, req->recv_time);
    fu_jw_obj_end(&w);
    char task[1024] = "";
    if (c.pipe_id)
        snprintf(task, sizeof(task), "%s:%s", agent, c.pipe_id);
    struct fu_buf ids = FU_BUF_INIT;
    size_t n = 0;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->nsessions && !cmd.oom; i++) {
        struct fu_session *s = f->sessions[i];
        if (strcmp(s->agent_id, agent) || (task[0] && strcmp(s->task_id, task)))
            continue;
        if (fu_strv_push(&s->commands, fu_buf_str(&cmd)) < 0) {
            ids.oom = true; /* answered 503 */
            break;
        }
        fu_buf_printf(&ids, "%s\"%s\"", n ? "," : "", s->id);
        n++;
        if (!task[0])
            break; /* agent-wide: once */
    }
    pthread_mutex_unlock(&f->mu);
    if (cmd.oom || ids.oom) {
        fu_http_error(resp, 503, "out of memory");
    } else if (!n && task[0]) {
        fu_http_error(resp, 404, "no live session of pipe '%s' of agent '%s'", c.pipe_id, agent);
    } else if (!n) {
        fu_http_error(resp, 404, "no live session of agent '%s'", agent);
    } else {
        fu_info("management: %s queued for agent %s (%zu session%s)", c.type, agent, n,
                n == 1 ? "" : "s");
        fu_buf_printf(&resp->body, "{\"status\":\"queued\",\"type\":\"%s\",\"sessions\":[%s]}",
                      c.type, fu_buf_str(&ids));
    }
    fu_buf_free(&ids);
    fu_buf_free(&cmd);
    command_free(&c);
}

/* POST snapshot[?view=ID]: a snapshot of every view with storage (or of that one) now, as
 * the snapshotter takes them; the request holds the shape lock, so the views stay. */
static void snapshot(struct fu_fusion *f, struct fu_http_req *req, struct fu_http_resp *resp)
{
    const char *only = fu_http_query(req, "view");
    struct fu_view *one = only ? fu_fusion_view(f, only) : NULL;
    if (only && !one) {
        fu_http_error(resp, 404, "no view '%s'", only);
        return;
    }
    size_t with = 0;
    for (size_t i = 0; i < f->nviews; i++)
        with += (!one || f->views[i] == one) && f->views[i]->journal;
    if (!with) {
        if (one)
            fu_http_error(resp, 409,
                          "view %s has no storage (journal.enabled is false in the Fusion "
                          "config): there is nothing to snapshot",
                          one->id);
        else
            fu_http_error(resp, 409,
                          "no view has storage (journal.enabled is false in the Fusion config, "
                          "or no view is enabled): there is nothing to snapshot");
        return;
    }
    struct fu_jw w;
    fu_jw_init(&w, &resp->body);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "views");
    fu_jw_arr_begin(&w);
    for (size_t i = 0; i < f->nviews; i++) {
        struct fu_view *v = f->views[i];
        if ((one && v != one) || !v->journal)
            continue;
        struct fu_snapshot_info info;
        double t0 = fu_mono_now();
        int rc = fu_view_snapshot(v, &info);
        if (rc < 0) {
            fu_http_error(resp, 503,
                          "view %s: the snapshot failed: %s; the views listed before it in the "
                          "config were snapshotted",
                          v->id, strerror(-rc));
            return;
        }
        fu_jw_obj_begin(&w);
        fu_jw_ckey(&w, "view_id");
        fu_jw_cstr(&w, v->id);
        fu_jw_ckey(&w, "position");
        fu_jw_uint(&w, info.position);
        fu_jw_ckey(&w, "bytes");
        fu_jw_uint(&w, info.file_bytes);
        fu_jw_ckey(&w, "seconds");
        fu_jw_double(&w, fu_mono_now() - t0);
        fu_jw_obj_end(&w);
    }
    fu_jw_arr_end(&w);
    fu_jw_obj_end(&w);
    fu_info("management: snapshot of %zu view%s taken", with, with == 1 ? "" : "s");
}

void fu_api_mgmt(struct fu_fusion *f, struct fu_http_req *req, struct fu_http_resp *resp)
{
    if (!authorized(f, req, resp))
        return;
    const char *rest = req->path + strlen(PREFIX);
    if (!strcmp(rest, "snapshot")) {
        if (strcmp(req->method, "POST"))
            fu_http_error(resp, 405, "use POST");
        else
            snapshot(f, req, resp);
        return;
    }
    if (!strcmp(rest, "agents")) {
        if (strcmp(req->method, "GET"))
            fu_http_error(resp, 405, "use GET");
        else
            agents(f, resp);
        return;
    }
    if (strncmp(rest, "agents/", 7)) {
        fu_http_error(resp, 404, "Not Found");
        return;
    }
    rest += 7;
    const char *slash = strrchr(rest, '/');
    char agent[256];
    size_t n = slash ? (size_t)(slash - rest) : 0;
    if (!slash || !n || n >= sizeof(agent)) {
        fu_http_error(resp, 404, "Not Found");
        return;
    }
    memcpy(agent, rest, n);
    agent[n] = '\0';
    if (!strcmp(slash + 1, "command")) {
        command(f, agent, req, resp);
    } else if (!strcmp(slash + 1, "config")) {
        if (strcmp(req->method, "GET"))
            fu_http_error(resp, 405, "use GET");
        else
            agent_config(f, agent, resp);
    } else {
        fu_http_error(resp, 404, "Not Found");
    }
}
