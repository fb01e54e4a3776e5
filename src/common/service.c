/* The long-running side of both binaries; see service.h. */
#include "common/service.h"

#include "common/fsutil.h"
#include "common/json.h"
#include "common/log.h"
#include "version.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void iso_time(long long ms, char *out, size_t n)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t l = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + l, n - l, ".%03lldZ", ms % 1000);
}

char *fu_service_path(const char *home, const char *sub, enum fu_cfg_kind kind, const char *suffix)
{
    struct fu_buf b = FU_BUF_INIT;
    fu_buf_puts(&b, home);
    if (sub)
        fu_buf_printf(&b, "/%s", sub);
    fu_buf_printf(&b, "/%s%s", fu_cfg_kind_name(kind), suffix);
    return fu_buf_detach(&b);
}

char *fu_service_backup_file(const char *home, enum fu_cfg_kind kind, long pid, const char *what)
{
    char suffix[64];
    snprintf(suffix, sizeof(suffix), ".backup.%ld.%s", pid, what);
    return fu_service_path(home, "run", kind, suffix);
}

char *fu_service_log_path(const struct fu_config *cfg, bool daemon)
{
    const struct fu_cfg_logging *lg = fu_config_logging(cfg);
    if (lg->file)
        return lg->file[0] == '/' ? strdup(lg->file) : fu_path_join(cfg->home, lg->file);
    if (lg->dir) {
        char *dir = lg->dir[0] == '/' ? strdup(lg->dir) : fu_path_join(cfg->home, lg->dir);
        char name[32];
        snprintf(name, sizeof(name), "%s.log", fu_cfg_kind_name(cfg->kind));
        char *p = dir ? fu_path_join(dir, name) : NULL;
        free(dir);
        return p;
    }
    return daemon ? fu_service_path(cfg->home, "logs", cfg->kind, ".log") : NULL;
}

static void strv_json(struct fu_jw *w, const struct fu_strv *v)
{
    fu_jw_arr_begin(w);
    for (size_t i = 0; i < v->n; i++)
        fu_jw_cstr(w, v->v[i]);
    fu_jw_arr_end(w);
}

static void write_status(struct fu_service *svc)
{
    struct fu_buf b = FU_BUF_INIT;
    struct fu_jw w;
    char ts[40];
    fu_jw_init(&w, &b);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "proc");
    fu_jw_cstr(&w, fu_cfg_kind_name(svc->app->kind));
    fu_jw_ckey(&w, "pid");
    fu_jw_int(&w, getpid());
    fu_jw_ckey(&w, "version");
    fu_jw_cstr(&w, FU_VERSION " (" FU_GIT_REV ")");
    fu_jw_ckey(&w, "started_at");
    iso_time(svc->started_ms, ts, sizeof(ts));
    fu_jw_cstr(&w, ts);
    fu_jw_ckey(&w, "started_at_ms");
    fu_jw_int(&w, svc->started_ms);
    fu_jw_ckey(&w, "daemon");
    fu_jw_bool(&w, svc->daemon);
    fu_jw_ckey(&w, "log");
    fu_jw_cstr(&w, svc->log_path ? svc->log_path : "stderr");
    fu_jw_ckey(&w, "config_dir");
    fu_jw_cstr(&w, svc->cfg.dir);
    fu_jw_ckey(&w, "config_files");
    strv_json(&w, &svc->cfg.files);
    fu_jw_ckey(&w, "activated_file");
    fu_jw_cstr(&w, svc->cfg.active_file);
    fu_jw_ckey(&w, "active_pipes");
    fu_jw_arr_begin(&w);
    const struct fu_cfg_vec *pipes = fu_config_pipes(&svc->cfg);
    for (size_t i = 0; i < pipes->n; i++) {
        const struct fu_cfg_item *p = fu_config_pipe_at(&svc->cfg, i);
        if (fu_config_pipe_active(&svc->cfg, p))
            fu_jw_cstr(&w, p->id);
    }
    fu_jw_arr_end(&w);
    fu_jw_ckey(&w, "log_level");
    fu_jw_cstr(&w, fu_log_level_name(fu_log_get_level()));
    fu_jw_ckey(&w, "reload_seq");
    fu_jw_int(&w, svc->reload_seq);
    fu_jw_ckey(&w, "last_reload");
    if (svc->last_reload.len)
        fu_jw_raw(&w, fu_buf_str(&svc->last_reload), svc->last_reload.len);
    else
        fu_jw_null(&w);
    if (svc->app->status && svc->rt) {
        fu_jw_ckey(&w, "runtime");
        svc->app->status(svc->rt, &w);
    }
    fu_jw_obj_end(&w);
    fu_buf_putc(&b, '\n');
    int rc = b.oom ? -ENOMEM : fu_write_file_atomic(svc->status_path, b.data, b.len, 0644);
    if (rc < 0)
        fu_warn("cannot write status file %s: %s", svc->status_path, strerror(-rc));
    fu_buf_free(&b);
}

static int setup_logging(struct fu_service *svc, const struct fu_config *cfg)
{
    const struct fu_cfg_logging *lg = fu_config_logging(cfg);
    enum fu_log_level lv = FU_LOG_INFO;
    fu_log_level_parse(lg->level, &lv);
    char *path = fu_service_log_path(cfg, svc->daemon);
    if (path) {
        char *slash = strrchr(path, '/');
        if (slash && slash != path) {
            *slash = '\0';
            fu_mkdirs(path, 0755);
            *slash = '/';
        }
    }
    int rc = fu_log_setup(fu_cfg_kind_name(cfg->kind), lv, !strcmp(lg->format, "json"), path);
    if (rc < 0) {
        fu_error("cannot open log file %s: %s; keeping the current log", path, strerror(-rc));
        free(path);
        return rc;
    }
    free(svc->log_path);
    svc->log_path = path;
    return 0;
}

static void log_list(const char *what, const struct fu_strv *v)
{
    struct fu_buf b = FU_BUF_INIT;
    for (size_t i = 0; i < v->n; i++)
        fu_buf_printf(&b, "%s%s", i ? ", " : "", v->v[i]);
    fu_info("reload: pipes %s: %s", what, v->n ? fu_buf_str(&b) : "none");
    fu_buf_free(&b);
}

int fu_service_reload(struct fu_service *svc)
{
    struct fu_config next;
    struct fu_diags d;
    fu_diags_init(&d);
    fu_info("reload: re-reading %s", svc->cfg.dir);
    int rc = fu_config_load(&next, svc->app->kind, svc->cfg.home, svc->start_file, &d);
    char ts[40];
    iso_time(now_ms(), ts, sizeof(ts));
    struct fu_jw w;
    fu_buf_reset(&svc->last_reload);
    fu_jw_init(&w, &svc->last_reload);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "at");
    fu_jw_cstr(&w, ts);
    fu_jw_ckey(&w, "ok");
    fu_jw_bool(&w, rc == 0);
    fu_jw_ckey(&w, "errors");
    fu_jw_arr_begin(&w);
    for (size_t i = 0; i < d.n; i++) {
        char *line = fu_diag_format(&d.v[i]);
        if (d.v[i].sev == FU_SEV_ERROR) {
            fu_error("reload: %s", line);
            fu_jw_cstr(&w, line);
        } else {
            fu_warn("reload: %s", line);
        }
        free(line);
    }
    fu_jw_arr_end(&w);
    if (rc < 0) {
        fu_error("reload rejected: %zu error(s) in the new config; the running config is "
                 "unchanged",
                 d.n_errors);
        fu_config_free(&next);
    } else {
        struct fu_config_diff diff;
        fu_config_diff(&svc->cfg, &next, &diff);
        log_list("added", &diff.added);
        log_list("removed", &diff.removed);
        log_list("changed", &diff.changed);
        fu_jw_ckey(&w, "added");
        strv_json(&w, &diff.added);
        fu_jw_ckey(&w, "removed");
        strv_json(&w, &diff.removed);
        fu_jw_ckey(&w, "changed");
        strv_json(&w, &diff.changed);
        if (diff.logging_changed)
            setup_logging(svc, &next);
        if (svc->rt && svc->app->reload) {
            int r = svc->app->reload(svc->rt, &next, &diff);
            fu_jw_ckey(&w, "runtime_ok");
            fu_jw_bool(&w, r == 0);
            if (r < 0)
                fu_error("reload: some changes could not be applied: %s", strerror(-r));
        }
        fu_config_diff_free(&diff);
        fu_config_free(&svc->cfg);
        svc->cfg = next;
        fu_info("reload applied");
    }
    fu_jw_obj_end(&w);
    svc->reload_seq++;
    write_status(svc);
    fu_diags_free(&d);
    return rc;
}

/* ------------------------------------------------------------ backup requests */

/* The directory a request file names ({"dir": "/abs/path"}), or NULL with the reason in err. */
static char *request_dir(const char *path, char *err, size_t errlen)
{
    struct fu_buf text = FU_BUF_INIT;
    int rc = fu_read_file(path, 64 * 1024, &text);
    char *dir = NULL;
    if (rc < 0) {
        snprintf(err, errlen, "cannot read the request %s: %s", path, strerror(-rc));
        fu_buf_free(&text);
        return NULL;
    }
    struct fu_jr r;
    fu_jr_init(&r, fu_buf_str(&text), text.len);
    bool ok = fu_jr_next(&r) == FU_JSON_OBJ_BEGIN;
    enum fu_json_tok t;
    while (ok && (t = fu_jr_next(&r)) == FU_JSON_KEY) {
        bool is_dir = r.str_len == 3 && !memcmp(r.str, "dir", 3);
        t = fu_jr_next(&r);
        if (is_dir && t == FU_JSON_STRING && r.str_len && !memchr(r.str, '\0', r.str_len)) {
            free(dir);
            dir = strndup(r.str, r.str_len);
        } else if (t == FU_JSON_OBJ_BEGIN || t == FU_JSON_ARR_BEGIN) {
            fu_jr_skip(&r);
        } else if (t < FU_JSON_OBJ_BEGIN) {
            ok = false;
        }
    }
    fu_jr_free(&r);
    fu_buf_free(&text);
    if (!dir || dir[0] != '/') {
        snprintf(err, errlen, "the request %s names no absolute directory", path);
        free(dir);
        return NULL;
    }
    return dir;
}

/* Answers one request: runs the app's backup and writes the result file. */
static void serve_backup(struct fu_service *svc, long pid)
{
    char *req = fu_service_backup_file(svc->cfg.home, svc->app->kind, pid, "request");
    char *res = fu_service_backup_file(svc->cfg.home, svc->app->kind, pid, "result");
    if (!req || !res) {
        free(req);
        free(res);
        return;
    }
    char err[1024] = "";
    char *dir = request_dir(req, err, sizeof(err));
    struct fu_buf manifest = FU_BUF_INIT;
    int rc = dir ? 0 : -EINVAL;
    if (!rc && (!svc->backup || !svc->rt)) {
        snprintf(err, sizeof(err), "%s takes no backups", svc->app->prog);
        rc = -ENOTSUP;
    }
    if (!rc) {
        fu_info("backup into %s requested (by pid %ld)", dir, pid);
        rc = svc->backup->backup(svc->rt, dir, &manifest, err, sizeof(err));
        if (rc < 0)
            fu_error("backup into %s failed: %s", dir, err);
        else
            fu_info("backup into %s complete", dir);
    }
    struct fu_buf out = FU_BUF_INIT;
    struct fu_jw w;
    fu_jw_init(&w, &out);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "ok");
    fu_jw_bool(&w, rc == 0);
    if (rc == 0) {
        fu_jw_ckey(&w, "manifest");
        fu_jw_raw(&w, fu_buf_str(&manifest), manifest.len);
    } else {
        fu_jw_ckey(&w, "error");
        fu_jw_cstr(&w, err[0] ? err : strerror(-rc));
    }
    fu_jw_obj_end(&w);
    fu_buf_putc(&out, '\n');
    int wrc = out.oom ? -ENOMEM : fu_write_file_atomic(res, out.data, out.len, 0644);
    if (wrc < 0)
        fu_error("cannot write the backup result %s: %s", res, strerror(-wrc));
    unlink(req);
    fu_buf_free(&out);
    fu_buf_free(&manifest);
    free(dir);
    free(req);
    free(res);
}

/* The requests waiting in run/ (SIGUSR2 says there is one; a scan finds them all, however the
 * signals coalesced). A request whose writer is gone is dropped, not run: nobody waits for it. */
static void serve_backups(struct fu_service *svc)
{
    char *rundir = fu_path_join(svc->cfg.home, "run");
    DIR *d = rundir ? opendir(rundir) : NULL;
    if (!d) {
        fu_error("backup: cannot list %s: %s", rundir ? rundir : "run/", strerror(errno));
        free(rundir);
        return;
    }
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "%s.backup.", fu_cfg_kind_name(svc->app->kind));
    long pids[16];
    size_t n = 0;
    struct dirent *e;
    while (n < sizeof(pids) / sizeof(pids[0]) && (e = readdir(d))) {
        size_t pl = strlen(prefix);
        char *end;
        if (strncmp(e->d_name, prefix, pl))
            continue;
        long pid = strtol(e->d_name + pl, &end, 10);
        if (pid > 0 && end != e->d_name + pl && !strcmp(end, ".request"))
            pids[n++] = pid;
    }
    closedir(d);
    free(rundir);
    for (size_t i = 0; i < n; i++) {
        if (kill((pid_t)pids[i], 0) < 0 && errno == ESRCH) {
            char *req = fu_service_backup_file(svc->cfg.home, svc->app->kind, pids[i], "request");
            fu_warn("backup: dropping the request of pid %ld, which is gone", pids[i]);
            if (req)
                unlink(req);
            free(req);
            continue;
        }
        serve_backup(svc, pids[i]);
    }
}

static void service_free(struct fu_service *svc)
{
    unlink(svc->status_path);
    fu_pidfile_release(&svc->pidfile);
    fu_config_free(&svc->cfg);
    free(svc->start_file);
    free(svc->log_path);
    free(svc->status_path);
    fu_buf_free(&svc->last_reload);
    fu_diags_free(&svc->startup);
}

int fu_service_run(struct fu_service *svc)
{
    svc->started_ms = now_ms();
    svc->status_path = fu_service_path(svc->cfg.home, "run", svc->app->kind, ".status.json");
    char *rundir = fu_path_join(svc->cfg.home, "run");
    if (rundir)
        fu_mkdirs(rundir, 0755);
    free(rundir);

    int rc = setup_logging(svc, &svc->cfg);
    if (rc < 0) {
        char m[512];
        snprintf(m, sizeof(m), "error: cannot open the log file: %s\n", strerror(-rc));
        service_free(svc); /* the pidfile goes before the starter hears of the failure */
        fu_daemon_report(&svc->report_fd, false, m);
        return 1;
    }
    if ((rc = fu_signals_install()) < 0) {
        fu_error("cannot install signal handlers: %s", strerror(-rc));
        service_free(svc);
        fu_daemon_report(&svc->report_fd, false, "error: cannot install signal handlers\n");
        return 1;
    }
    if (svc->app->start) {
        char err[512] = "";
        rc = svc->app->start(&svc->rt, &svc->cfg, err, sizeof(err));
        if (rc < 0) {
            fu_error("cannot start: %s", err);
            char m[700];
            snprintf(m, sizeof(m), "error: cannot start: %s\n", err);
            service_free(svc);
            fu_log_close();
            fu_daemon_report(&svc->report_fd, false, m);
            return 1;
        }
    }
    write_status(svc);
    fu_info("%s %s started (pid %ld), config %s, activated %s", svc->app->prog, FU_VERSION,
            (long)getpid(), svc->cfg.dir,
            svc->cfg.active_file ? svc->cfg.active_file : "(no file)");
    for (size_t i = 0; i < svc->startup.n; i++) {
        char *line = fu_diag_format(&svc->startup.v[i]);
        fu_warn("config: %s", line);
        free(line);
    }
    const struct fu_cfg_vec *pipes = fu_config_pipes(&svc->cfg);
    for (size_t i = 0; i < pipes->n; i++) {
        const struct fu_cfg_item *p = fu_config_pipe_at(&svc->cfg, i);
        fu_info("pipe %s: %s", p->id, fu_config_pipe_active(&svc->cfg, p) ? "active" : "inactive");
    }
    char m[1024];
    snprintf(m, sizeof(m), "%s started (pid %ld); log: %s\n", svc->app->prog, (long)getpid(),
             svc->log_path ? svc->log_path : "stderr");
    fu_daemon_report(&svc->report_fd, true, m);

    long long status_at = now_ms();
    for (;;) {
        struct pollfd pfd = {.fd = fu_signals_fd(), .events = POLLIN};
        int n = poll(&pfd, 1, svc->app->status ? 1000 : -1);
        if (svc->app->status && now_ms() - status_at >= 2000) {
            write_status(svc); /* the runtime's live state for `status` */
            status_at = now_ms();
        }
        if (n < 0 && errno != EINTR) {
            fu_error("poll: %s", strerror(errno));
            break;
        }
        unsigned sig = fu_signals_take();
        if (sig & FU_SIG_TERM) {
            fu_info("stopping on signal");
            break;
        }
        if (sig & FU_SIG_USR1) {
            int r = fu_log_reopen();
            if (r < 0)
                fu_error("cannot reopen the log file: %s", strerror(-r));
            else
                fu_info("log file reopened");
        }
        if (sig & FU_SIG_HUP)
            fu_service_reload(svc);
        if (sig & FU_SIG_USR2)
            serve_backups(svc);
    }
    if (svc->app->stop && svc->rt)
        svc->app->stop(svc->rt);
    svc->rt = NULL;
    fu_info("%s stopped", svc->app->prog);
    service_free(svc);
    fu_log_close();
    return 0;
}
