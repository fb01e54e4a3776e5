/* The command line shared by fustor-fusion and fustor-agent: start, stop, reload, status,
 * validate, --version, --help, and Fusion's backup and restore. Commands are thin: config.c,
 * daemon.c, service.c and the app's backup hooks do the work. Exit codes: 0 ok, 1 failure,
 * 2 usage, 3 `status` of a process that is not running. */
#include "common/cli.h"

#include "common/config.h"
#include "common/daemon.h"
#include "common/fsutil.h"
#include "common/json.h"
#include "common/log.h"
#include "common/service.h"
#include "version.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define EXIT_NOT_RUNNING 3

static void usage(const struct fu_app *app, const struct fu_app_backup *b, FILE *f)
{
    const char *k = fu_cfg_kind_name(app->kind);
    const char *backup =
        "  backup DIR [--timeout SEC]  snapshot every view of the running Fusion into DIR\n"
        "                              (absent or empty; MANIFEST.json is written last);\n"
        "                              waits up to SEC (default 600) for it\n"
        "  restore DIR                 with Fusion stopped: check the backup in DIR, then\n"
        "                              put its views in place in data/views; each view's\n"
        "                              old directory is kept as <view>.before-restore-TIME\n"
        "  purge [VIEW...]             delete the data directories of views no longer in\n"
        "                              the config (and not open in the running Fusion);\n"
        "                              without VIEW, list those that could go\n";
    fprintf(f,
            "Usage: %s <command> [options]\n"
            "\n"
            "Commands:\n"
            "  start [FILE] [-D|--daemon]  start; without FILE only the pipes of default.yaml\n"
            "                              are activated; FILE is a name in the config dir or a\n"
            "                              path; -D detaches and logs to logs/%s.log\n"
            "  stop [--timeout SEC]        SIGTERM, then SIGKILL after SEC (default 10)\n"
            "  reload                      re-read the config (SIGHUP) and report the outcome\n"
            "  status [--json|--config]    running or not, pid, config files, active pipes\n"
            "                              (the agent: each pipe's role, phase, counters);\n"
            "                              --config prints the effective config, secrets hidden\n"
            "  validate [FILE]             check the config; non-zero exit on errors\n"
            "%s"
            "  --version, --help\n"
            "\n"
            "Config: $FUSTOR_HOME/%s-config/*.yaml ($FUSTOR_HOME defaults to ~/.fustor).\n"
            "Environment: FUSTOR_HOME, FUSTOR_LOG_LEVEL%s.\n",
            app->prog, k, b ? backup : "", k,
            app->kind == FU_CFG_FUSION ? ", FUSTOR_FUSION_PORT" : "");
}

static void print_diags(const struct fu_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        char *s = fu_diag_format(&d->v[i]);
        fprintf(stderr, "%s\n", s);
        free(s);
    }
}

static char *pid_path(const struct fu_app *app, const char *home)
{
    return fu_service_path(home, NULL, app->kind, ".pid");
}

/* ------------------------------------------------------------ start */

static int cmd_start(const struct fu_app *app, const struct fu_app_backup *b, const char *home,
                     const char *file, bool daemon)
{
    struct fu_service svc = {.app = app, .daemon = daemon, .report_fd = -1, .backup = b};
    svc.pidfile.fd = -1;
    struct fu_diags d;
    fu_diags_init(&d);
    int rc = fu_config_load(&svc.cfg, app->kind, home, file, &d);
    print_diags(&d);
    if (rc < 0) {
        fprintf(stderr, "%s: not started: %zu error(s) in the config\n", app->prog, d.n_errors);
        fu_diags_free(&d);
        fu_config_free(&svc.cfg);
        return 1;
    }
    svc.startup = d; /* the warnings go to the log too */

    char *pidp = pid_path(app, home);
    pid_t old = 0;
    if (fu_pidfile_probe(pidp, &old) == FU_PID_STALE)
        fprintf(stderr, "%s: removing stale pidfile %s (pid %ld is not running)\n", app->prog, pidp,
                (long)old);
    fu_mkdirs(home, 0755);
    rc = fu_pidfile_acquire(&svc.pidfile, pidp, &old);
    if (rc == -EEXIST)
        fprintf(stderr, "%s: already running (pid %ld); run '%s stop' first\n", app->prog,
                (long)old, app->prog);
    else if (rc < 0)
        fprintf(stderr, "%s: cannot lock pidfile %s: %s\n", app->prog, pidp, strerror(-rc));
    free(pidp);
    if (rc < 0) {
        fu_config_free(&svc.cfg);
        fu_diags_free(&svc.startup);
        return 1;
    }
    if (file)
        svc.start_file = strdup(file);

    if (daemon) {
        char *out = fu_service_path(home, "logs", app->kind, ".log");
        char *logs = fu_path_join(home, "logs");
        if (logs)
            fu_mkdirs(logs, 0755);
        free(logs);
        int exit_code = 1;
        rc = fu_daemonize(out, &svc.report_fd, &exit_code);
        free(out);
        if (rc != 0) {
            if (rc < 0) {
                fprintf(stderr, "%s: cannot detach: %s\n", app->prog, strerror(-rc));
                fu_pidfile_release(&svc.pidfile);
            } else {
                fu_pidfile_forget(&svc.pidfile); /* the daemon holds the lock now */
            }
            fu_config_free(&svc.cfg);
            fu_diags_free(&svc.startup);
            free(svc.start_file);
            return rc < 0 ? 1 : exit_code;
        }
        rc = fu_pidfile_write(&svc.pidfile, getpid());
        if (rc < 0) {
            char m[256];
            snprintf(m, sizeof(m), "error: cannot write the pidfile: %s\n", strerror(-rc));
            fu_daemon_report(&svc.report_fd, false, m);
            fu_pidfile_release(&svc.pidfile);
            fu_config_free(&svc.cfg);
            fu_diags_free(&svc.startup);
            free(svc.start_file);
            return 1;
        }
    }
    return fu_service_run(&svc);
}

/* ------------------------------------------------------------ stop / reload */

/* Whether pid is gone: no such process, or a zombie waiting for its parent. */
static bool process_gone(pid_t pid)
{
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return true;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    struct fu_buf st = FU_BUF_INIT;
    bool zombie = false;
    if (fu_read_file(path, 4096, &st) == 0) {
        const char *paren = strrchr(fu_buf_str(&st), ')');
        zombie = paren && paren[1] == ' ' && paren[2] == 'Z';
    }
    fu_buf_free(&st);
    return zombie;
}

/* True once the lock is free and process `pid` is gone (it releases the lock a moment before
 * it exits, and "stopped" should mean no process is left). */
static bool wait_gone(const char *pidp, pid_t pid, double seconds)
{
    pid_t p;
    for (double t = 0;; t += 0.02) {
        if (fu_pidfile_probe(pidp, &p) != FU_PID_RUNNING && process_gone(pid))
            return true;
        if (t >= seconds)
            return false;
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
}

static int cmd_stop(const struct fu_app *app, const char *home, double timeout)
{
    char *pidp = pid_path(app, home);
    pid_t pid;
    enum fu_pid_state st = fu_pidfile_probe(pidp, &pid);
    int rc = 0;
    if (st == FU_PID_NONE) {
        printf("%s is not running\n", app->prog);
    } else if (st == FU_PID_STALE) {
        unlink(pidp);
        printf("%s is not running; removed stale pidfile (pid %ld)\n", app->prog, (long)pid);
    } else if (pid <= 0 || kill(pid, SIGTERM) < 0) {
        fprintf(stderr, "%s: cannot signal pid %ld: %s\n", app->prog, (long)pid,
                pid <= 0 ? "pidfile holds no pid" : strerror(errno));
        rc = 1;
    } else if (wait_gone(pidp, pid, timeout)) {
        printf("%s stopped (pid %ld)\n", app->prog, (long)pid);
    } else {
        fprintf(stderr, "%s: pid %ld did not stop within %.0f s; sending SIGKILL\n", app->prog,
                (long)pid, timeout);
        kill(pid, SIGKILL);
        if (wait_gone(pidp, pid, 5)) {
            unlink(pidp);
            printf("%s killed (pid %ld)\n", app->prog, (long)pid);
        } else {
            fprintf(stderr, "%s: pid %ld survived SIGKILL\n", app->prog, (long)pid);
            rc = 1;
        }
    }
    free(pidp);
    return rc;
}

static bool key_is(const struct fu_jr *r, const char *k)
{
    return r->str_len == strlen(k) && !memcmp(r->str, k, r->str_len);
}

/* Reads the status file into `out`. Returns its reload_seq, or -1 when unreadable; sets
 * *reload_ok to last_reload.ok. */
static long long read_status(const struct fu_app *app, const char *home, struct fu_buf *out,
                             bool *reload_ok)
{
    char *p = fu_service_path(home, "run", app->kind, ".status.json");
    fu_buf_reset(out);
    int rc = p ? fu_read_file(p, 1 << 20, out) : -ENOMEM;
    free(p);
    if (rc < 0)
        return -1;
    struct fu_jr r;
    fu_jr_init(&r, fu_buf_str(out), out->len);
    long long seq = -1;
    *reload_ok = false;
    if (fu_jr_next(&r) == FU_JSON_OBJ_BEGIN) {
        while (fu_jr_next(&r) == FU_JSON_KEY) {
            bool want_seq = key_is(&r, "reload_seq"), want_last = key_is(&r, "last_reload");
            enum fu_json_tok t = fu_jr_next(&r);
            if (want_seq && t == FU_JSON_INT) {
                seq = r.i64;
            } else if (want_last && t == FU_JSON_OBJ_BEGIN) {
                while (fu_jr_next(&r) == FU_JSON_KEY) {
                    bool want_ok = key_is(&r, "ok");
                    t = fu_jr_next(&r);
                    if (want_ok)
                        *reload_ok = t == FU_JSON_TRUE;
                    else if (t == FU_JSON_OBJ_BEGIN || t == FU_JSON_ARR_BEGIN)
                        fu_jr_skip(&r);
                }
            } else if (t == FU_JSON_OBJ_BEGIN || t == FU_JSON_ARR_BEGIN) {
                fu_jr_skip(&r);
            }
        }
    }
    fu_jr_free(&r);
    return seq;
}

static void print_json_value(struct fu_jr *r, enum fu_json_tok t, int indent);

/* Prints the status document as indented "key: value" lines. */
static void print_json_object(struct fu_jr *r, int indent)
{
    enum fu_json_tok t;
    while ((t = fu_jr_next(r)) == FU_JSON_KEY) {
        printf("%*s%.*s:", indent, "", (int)r->str_len, r->str);
        t = fu_jr_next(r);
        if (t == FU_JSON_OBJ_BEGIN) {
            printf("\n");
            print_json_object(r, indent + 2);
        } else {
            printf(" ");
            print_json_value(r, t, indent);
            printf("\n");
        }
    }
}

static void print_json_value(struct fu_jr *r, enum fu_json_tok t, int indent)
{
    switch (t) {
    case FU_JSON_STRING:
        printf("%.*s", (int)r->str_len, r->str);
        break;
    case FU_JSON_INT:
        printf("%lld", (long long)r->i64);
        break;
    case FU_JSON_DOUBLE:
        printf("%g", r->dbl);
        break;
    case FU_JSON_TRUE:
        printf("yes");
        break;
    case FU_JSON_FALSE:
        printf("no");
        break;
    case FU_JSON_NULL:
        printf("-");
        break;
    case FU_JSON_ARR_BEGIN: {
        int n = 0;
        while ((t = fu_jr_next(r)) != FU_JSON_ARR_END && t > FU_JSON_EOF) {
            if (t == FU_JSON_OBJ_BEGIN) {
                printf("\n");
                print_json_object(r, indent + 2);
            } else {
                printf("%s", n ? ", " : "");
                print_json_value(r, t, indent);
            }
            n++;
        }
        if (!n)
            printf("(none)");
        break;
    }
    case FU_JSON_OBJ_BEGIN:
        print_json_object(r, indent + 2);
        break;
    default:
        break;
    }
}

static int cmd_reload(const struct fu_app *app, const char *home)
{
    char *pidp = pid_path(app, home);
    pid_t pid;
    enum fu_pid_state st = fu_pidfile_probe(pidp, &pid);
    free(pidp);
    if (st != FU_PID_RUNNING) {
        fprintf(stderr, "%s is not running%s\n", app->prog,
                st == FU_PID_STALE ? " (stale pidfile)" : "");
        return 1;
    }
    struct fu_buf status = FU_BUF_INIT;
    bool ok = false;
    long long seq = read_status(app, home, &status, &ok);
    if (kill(pid, SIGHUP) < 0) {
        fprintf(stderr, "%s: cannot signal pid %ld: %s\n", app->prog, (long)pid, strerror(errno));
        fu_buf_free(&status);
        return 1;
    }
    /* Wait for the daemon to record the outcome, so the operator learns it here. */
    long long now = seq;
    for (int i = 0; i < 200 && now <= seq; i++) {
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
        now = read_status(app, home, &status, &ok);
    }
    int rc = 0;
    if (now <= seq) {
        printf("reload signal sent to pid %ld; no outcome reported yet (see the log)\n", (long)pid);
    } else {
        struct fu_jr r;
        fu_jr_init(&r, fu_buf_str(&status), status.len);
        if (fu_jr_next(&r) == FU_JSON_OBJ_BEGIN) {
            enum fu_json_tok t;
            while ((t = fu_jr_next(&r)) == FU_JSON_KEY) {
                bool want = key_is(&r, "last_reload");
                t = fu_jr_next(&r);
                if (want && t == FU_JSON_OBJ_BEGIN) {
                    printf("%s reload %s (pid %ld)\n", app->prog, ok ? "applied" : "REJECTED",
                           (long)pid);
                    print_json_object(&r, 2);
                } else if (t == FU_JSON_OBJ_BEGIN || t == FU_JSON_ARR_BEGIN) {
                    fu_jr_skip(&r);
                }
            }
        }
        fu_jr_free(&r);
        rc = ok ? 0 : 1;
    }
    fu_buf_free(&status);
    return rc;
}

/* ------------------------------------------------------------ status / validate */

static int cmd_status(const struct fu_app *app, const char *home, bool json, bool config)
{
    if (config) {
        struct fu_config cfg;
        struct fu_diags d;
        fu_diags_init(&d);
        fu_config_load(&cfg, app->kind, home, NULL, &d);
        print_diags(&d);
        struct fu_buf b = FU_BUF_INIT;
        fu_config_to_json(&cfg, true, &b);
        printf("%s\n", fu_buf_str(&b));
        fu_buf_free(&b);
        fu_config_free(&cfg);
        int rc = d.n_errors ? 1 : 0;
        fu_diags_free(&d);
        return rc;
    }
    char *pidp = pid_path(app, home);
    pid_t pid;
    enum fu_pid_state st = fu_pidfile_probe(pidp, &pid);
    if (st != FU_PID_RUNNING) {
        if (json)
            printf("{\"running\":false,\"stale_pidfile\":%s}\n",
                   st == FU_PID_STALE ? "true" : "false");
        else if (st == FU_PID_STALE)
            printf("%s: not running (stale pidfile %s names pid %ld)\n", app->prog, pidp,
                   (long)pid);
        else
            printf("%s: not running\n", app->prog);
        free(pidp);
        return EXIT_NOT_RUNNING;
    }
    free(pidp);
    struct fu_buf status = FU_BUF_INIT;
    bool ok;
    long long seq = read_status(app, home, &status, &ok);
    if (json) {
        if (seq < 0)
            printf("{\"running\":true,\"pid\":%ld}\n", (long)pid);
        else
            printf("{\"running\":true,\"status\":%s}\n", fu_buf_str(&status));
    } else {
        printf("%s: running (pid %ld)\n", app->prog, (long)pid);
        if (seq >= 0) {
            struct fu_jr r;
            fu_jr_init(&r, fu_buf_str(&status), status.len);
            if (fu_jr_next(&r) == FU_JSON_OBJ_BEGIN)
                print_json_object(&r, 2);
            fu_jr_free(&r);
        } else {
            printf("  (no status file yet)\n");
        }
    }
    fu_buf_free(&status);
    return 0;
}

static int cmd_validate(const struct fu_app *app, const char *home, const char *file)
{
    struct fu_config cfg;
    struct fu_diags d;
    fu_diags_init(&d);
    int rc = fu_config_load(&cfg, app->kind, home, file, &d);
    print_diags(&d);
    if (rc == 0) {
        size_t active = 0, n = fu_config_pipes(&cfg)->n;
        for (size_t i = 0; i < n; i++)
            active += fu_config_pipe_active(&cfg, fu_config_pipe_at(&cfg, i));
        printf("%s: config OK: %zu file(s), %zu pipe(s), %zu active with %s, %zu warning(s)\n",
               cfg.dir, cfg.files.n, n, active,
               cfg.active_file ? cfg.active_file : "no activated file", d.n_warnings);
    } else {
        fprintf(stderr, "%s: %zu error(s), %zu warning(s)\n", cfg.dir ? cfg.dir : home, d.n_errors,
                d.n_warnings);
    }
    fu_config_free(&cfg);
    fu_diags_free(&d);
    return rc == 0 ? 0 : 1;
}

/* ------------------------------------------------------------ backup / restore */

/* The result file's answer: prints the views backed up (0), or the error (1). */
static int print_backup_result(const struct fu_app *app, const char *dir, const struct fu_buf *res)
{
    struct fu_jr r;
    fu_jr_init(&r, fu_buf_str(res), res->len);
    bool ok = false;
    size_t nviews = 0;
    struct fu_buf error = FU_BUF_INIT;
    bool obj = fu_jr_next(&r) == FU_JSON_OBJ_BEGIN;
    while (obj && fu_jr_next(&r) == FU_JSON_KEY) {
        bool k_ok = key_is(&r, "ok"), k_err = key_is(&r, "error"), k_man = key_is(&r, "manifest");
        enum fu_json_tok v = fu_jr_next(&r);
        if (k_ok) {
            ok = v == FU_JSON_TRUE;
        } else if (k_err && v == FU_JSON_STRING) {
            fu_buf_append(&error, r.str, r.str_len);
        } else if (k_man && v == FU_JSON_OBJ_BEGIN) {
            while (fu_jr_next(&r) == FU_JSON_KEY) {
                bool k_views = key_is(&r, "views");
                v = fu_jr_next(&r);
                if (!k_views || v != FU_JSON_ARR_BEGIN) {
                    fu_jr_skip(&r);
                    continue;
                }
                while (fu_jr_next(&r) == FU_JSON_OBJ_BEGIN) {
                    struct fu_buf id = FU_BUF_INIT, file = FU_BUF_INIT;
                    long long pos = 0, entries = 0, bytes = 0;
                    while (fu_jr_next(&r) == FU_JSON_KEY) {
                        struct fu_buf *sv = key_is(&r, "view_id") ? &id
                                            : key_is(&r, "file")  ? &file
                                                                  : NULL;
                        long long *iv = key_is(&r, "position")  ? &pos
                                        : key_is(&r, "entries") ? &entries
                                        : key_is(&r, "bytes")   ? &bytes
                                                                : NULL;
                        v = fu_jr_next(&r);
                        if (sv && v == FU_JSON_STRING)
                            fu_buf_append(sv, r.str, r.str_len);
                        else if (iv && v == FU_JSON_INT)
                            *iv = r.i64;
                        else
                            fu_jr_skip(&r);
                    }
                    printf("view %s: snapshot at journal position %lld, %lld entries, %lld bytes: "
                           "%s/%s\n",
                           fu_buf_str(&id), pos, entries, bytes, dir, fu_buf_str(&file));
                    nviews++;
                    fu_buf_free(&id);
                    fu_buf_free(&file);
                }
            }
        } else {
            fu_jr_skip(&r);
        }
    }
    fu_jr_free(&r);
    int rc = 0;
    if (ok) {
        printf("backup complete: %zu view%s in %s (MANIFEST.json lists them)\n", nviews,
               nviews == 1 ? "" : "s", dir);
    } else {
        fprintf(stderr, "%s: backup failed: %s\n", app->prog,
                error.len ? fu_buf_str(&error) : "no reason given (see the log)");
        rc = 1;
    }
    fu_buf_free(&error);
    return rc;
}

/* Asks the running process for a backup: a request file in run/, SIGUSR2, then the result
 * file it writes (service.c), waited for up to `timeout` seconds. */
static int cmd_backup(const struct fu_app *app, const char *home, const char *dir, double timeout)
{
    char *pidp = pid_path(app, home);
    pid_t pid;
    enum fu_pid_state st = fu_pidfile_probe(pidp, &pid);
    if (st != FU_PID_RUNNING) {
        fprintf(stderr,
                "%s is not running%s: `backup` takes a snapshot of every view of a running "
                "Fusion. Start it first, or copy %s/data/views of the stopped Fusion: that "
                "copy is an offline backup\n",
                app->prog, st == FU_PID_STALE ? " (stale pidfile)" : "", home);
        free(pidp);
        return 1;
    }
    struct fu_buf status = FU_BUF_INIT;
    bool ok;
    long long seq = read_status(app, home, &status, &ok);
    fu_buf_free(&status);
    if (seq < 0 || pid <= 0) {
        fprintf(stderr, "%s (pid %ld) is still starting; try again in a moment\n", app->prog,
                (long)pid);
        free(pidp);
        return 1;
    }
    char *req = fu_service_backup_file(home, app->kind, (long)getpid(), "request");
    char *res = fu_service_backup_file(home, app->kind, (long)getpid(), "result");
    struct fu_buf body = FU_BUF_INIT, result = FU_BUF_INIT;
    struct fu_jw w;
    fu_jw_init(&w, &body);
    fu_jw_obj_begin(&w);
    fu_jw_ckey(&w, "dir");
    fu_jw_cstr(&w, dir);
    fu_jw_obj_end(&w);
    int rc = 1;
    if (!req || !res || body.oom) {
        fprintf(stderr, "%s: out of memory\n", app->prog);
        goto out;
    }
    unlink(res);
    int wrc = fu_write_file_atomic(req, body.data, body.len, 0600);
    if (wrc < 0) {
        fprintf(stderr, "%s: cannot write the request %s: %s\n", app->prog, req, strerror(-wrc));
        goto out;
    }
    if (kill(pid, SIGUSR2) < 0) {
        fprintf(stderr, "%s: cannot signal pid %ld: %s\n", app->prog, (long)pid, strerror(errno));
        unlink(req);
        goto out;
    }
    printf("backup of %s (pid %ld) into %s requested\n", app->prog, (long)pid, dir);
    fflush(stdout);
    bool answered = false, gone = false;
    for (double t = 0; !answered && !gone && t < timeout; t += 0.05) {
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
        answered = fu_read_file(res, 1 << 24, &result) == 0;
        if (!answered) {
            fu_buf_reset(&result);
            gone = fu_pidfile_probe(pidp, &(pid_t){0}) != FU_PID_RUNNING;
        }
    }
    if (answered) {
        unlink(res);
        rc = print_backup_result(app, dir, &result);
    } else if (gone) {
        unlink(req);
        fprintf(stderr,
                "%s: pid %ld stopped before it answered; %s is incomplete (no "
                "MANIFEST.json)\n",
                app->prog, (long)pid, dir);
    } else {
        unlink(req);
        fprintf(stderr,
                "%s: no answer within %.0f s; the backup may still be under way (see the "
                "log): %s is complete once it holds MANIFEST.json\n",
                app->prog, timeout, dir);
    }
out:
    fu_buf_free(&body);
    fu_buf_free(&result);
    free(req);
    free(res);
    free(pidp);
    return rc;
}

/* Restores a backup while the process is stopped. The pidfile lock is held throughout, so
 * the process cannot start in the middle. */
static int cmd_restore(const struct fu_app *app, const struct fu_app_backup *b, const char *home,
                       const char *dir)
{
    char *pidp = pid_path(app, home);
    fu_mkdirs(home, 0755);
    struct fu_pidfile pf;
    pid_t holder = 0;
    int rc = pidp ? fu_pidfile_acquire(&pf, pidp, &holder) : -ENOMEM;
    if (rc == -EEXIST) {
        fprintf(stderr,
                "%s is running (pid %ld): stop it first ('%s stop'); restore replaces the "
                "views' data and works only while Fusion is stopped. Nothing was changed\n",
                app->prog, (long)holder, app->prog);
    } else if (rc < 0) {
        fprintf(stderr, "%s: cannot lock the pidfile %s: %s\n", app->prog, pidp ? pidp : home,
                strerror(-rc));
    }
    free(pidp);
    if (rc < 0)
        return 1;
    struct fu_strv done = {0};
    char err[2048] = "";
    rc = b->restore(home, dir, &done, err, sizeof(err));
    fu_pidfile_release(&pf);
    for (size_t i = 0; i < done.n; i++)
        printf("%s\n", done.v[i]);
    if (rc < 0)
        fprintf(stderr, "%s: restore failed: %s%s\n", app->prog, err[0] ? err : strerror(-rc),
                done.n ? "" : "; nothing was changed");
    fu_strv_free(&done);
    return rc < 0 ? 1 : 0;
}

/* Deletes data directories of views the config no longer has (running or not: a view the
 * running Fusion still has open is refused by its lock). */
static int cmd_purge(const struct fu_app *app, const struct fu_app_backup *b, const char *home,
                     const struct fu_strv *names)
{
    struct fu_config cfg;
    struct fu_diags d;
    fu_diags_init(&d);
    int rc = fu_config_load(&cfg, app->kind, home, NULL, &d);
    if (rc < 0) {
        print_diags(&d);
        fprintf(stderr,
                "%s: purge needs a valid config to know which views are still in use; nothing "
                "was deleted\n",
                app->prog);
        fu_config_free(&cfg);
        fu_diags_free(&d);
        return 1;
    }
    struct fu_strv configured = {0}, done = {0};
    for (size_t i = 0; i < cfg.fusion.views.n; i++)
        fu_strv_push(&configured, FU_CFG_AT(&cfg.fusion.views, struct fu_cfg_view, i)->it.id);
    char err[1024] = "";
    rc = b->purge(home, &configured, names, &done, err, sizeof(err));
    for (size_t i = 0; i < done.n; i++)
        printf("%s\n", done.v[i]);
    if (rc < 0)
        fprintf(stderr, "%s: purge: %s\n", app->prog, err[0] ? err : strerror(-rc));
    else if (!names->n && !done.n)
        printf("every view data directory is in use by the config; nothing to purge\n");
    fu_strv_free(&configured);
    fu_strv_free(&done);
    fu_config_free(&cfg);
    fu_diags_free(&d);
    return rc < 0 ? 1 : 0;
}

/* ------------------------------------------------------------ dispatch */

/* Makes `path` (owned, may be NULL) absolute against the working directory. */
static char *absolute(char *path)
{
    if (!path || path[0] == '/')
        return path;
    char *cwd = getcwd(NULL, 0);
    char *abs = cwd ? fu_path_join(cwd, path) : NULL;
    free(cwd);
    free(path);
    return abs;
}

int fu_cli_main(const struct fu_app *app, int argc, char **argv)
{
    return fu_cli_main_with_backup(app, NULL, argc, argv);
}

int fu_cli_main_with_backup(const struct fu_app *app, const struct fu_app_backup *b, int argc,
                            char **argv)
{
    if (argc < 2) {
        usage(app, b, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(app, b, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("%s %s (git %s, protocol v%s)\n", app->prog, FU_VERSION, FU_GIT_REV,
               FU_PROTOCOL_VERSION);
        return 0;
    }
    const char *file = NULL;
    struct fu_strv names = {0}; /* purge's */
    bool purge = b && b->purge && !strcmp(cmd, "purge");
    bool daemon = false, json = false, config = false;
    double timeout = 0; /* 0: the command's default */
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-D") || !strcmp(a, "--daemon")) {
            daemon = true;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--config")) {
            config = true;
        } else if (!strcmp(a, "--timeout") && i + 1 < argc) {
            char *end;
            timeout = strtod(argv[++i], &end);
            if (*end || !(timeout > 0) || !isfinite(timeout)) {
                fprintf(stderr, "%s: --timeout expects seconds > 0, got '%s'\n", app->prog,
                        argv[i]);
                fu_strv_free(&names);
                return EXIT_USAGE;
            }
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(app, b, stdout);
            fu_strv_free(&names);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "%s: unknown option '%s'\n", app->prog, a);
            usage(app, b, stderr);
            fu_strv_free(&names);
            return EXIT_USAGE;
        } else if (purge) {
            fu_strv_push(&names, a);
        } else if (!file) {
            file = a;
        } else {
            fprintf(stderr, "%s: unexpected argument '%s'\n", app->prog, a);
            fu_strv_free(&names);
            return EXIT_USAGE;
        }
    }
    bool takes_dir = b && (!strcmp(cmd, "backup") || !strcmp(cmd, "restore"));
    bool takes_file = !strcmp(cmd, "start") || !strcmp(cmd, "validate");
    bool known = takes_file || takes_dir || purge || !strcmp(cmd, "stop") ||
                 !strcmp(cmd, "reload") || !strcmp(cmd, "status");
    if (file && known && !takes_file && !takes_dir) {
        fprintf(stderr, "%s: '%s' takes no file argument\n", app->prog, cmd);
        fu_strv_free(&names);
        return EXIT_USAGE;
    }
    if (takes_dir && (!file || !*file)) {
        fprintf(stderr, "%s: '%s' needs a directory: %s %s DIR\n", app->prog, cmd, app->prog, cmd);
        fu_strv_free(&names);
        return EXIT_USAGE;
    }
    /* The daemon changes to "/", so every path it keeps must be absolute. */
    char *home = absolute(fu_config_home());
    char *file_abs = file && (takes_dir || strchr(file, '/')) ? absolute(strdup(file)) : NULL;
    if (file_abs)
        file = file_abs;
    if (!home) {
        fprintf(stderr, "%s: out of memory\n", app->prog);
        free(file_abs);
        fu_strv_free(&names);
        return 1;
    }
    int rc;
    if (!strcmp(cmd, "start"))
        rc = cmd_start(app, b, home, file, daemon);
    else if (!strcmp(cmd, "stop"))
        rc = cmd_stop(app, home, timeout > 0 ? timeout : 10);
    else if (!strcmp(cmd, "reload"))
        rc = cmd_reload(app, home);
    else if (!strcmp(cmd, "status"))
        rc = cmd_status(app, home, json, config);
    else if (!strcmp(cmd, "validate"))
        rc = cmd_validate(app, home, file);
    else if (takes_dir && !strcmp(cmd, "backup"))
        rc = cmd_backup(app, home, file, timeout > 0 ? timeout : 600);
    else if (takes_dir && !strcmp(cmd, "restore"))
        rc = cmd_restore(app, b, home, file);
    else if (purge)
        rc = cmd_purge(app, b, home, &names);
    else {
        fprintf(stderr, "%s: unknown command '%s'\n", app->prog, cmd);
        usage(app, b, stderr);
        rc = EXIT_USAGE;
    }
    free(home);
    free(file_abs);
    fu_strv_free(&names);
    return rc;
}
