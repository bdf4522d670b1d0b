/*
 * tls_loadgen.c - TLS load generator for the benchmark: single thread, epoll, non-blocking, GnuTLS client.
 *
 * Modes:
 *   echo  keep --concurrency connections in flight; each: connect, handshake, send the message, read until
 *         the expected reply is complete, bye (SHUT_WR, without waiting for the server's), close.
 *   bulk  one connection; stream --bytes of a deterministic pattern, verifying the echo as it comes back.
 *   idle  open --concurrency connections, complete their handshakes, hold them until stdin EOF/--duration.
 *   http  like echo, with one HTTP/1.1 request per connection (ALPN http/1.1, GET --path, Connection: close):
 *         a connection counts when the response is complete (status 200, Content-Length bytes of body).
 *
 * It does NOT verify the server's certificate chain or name (no gnutls_session_set_verify_cert): it is a
 * load generator, not a client. GnuTLS still verifies the server's handshake signature, which cannot be
 * turned off, so the client-side cost includes one signature verification per full handshake.
 *
 * Build: cc -std=c11 -O2 -Wall -Wextra tls_loadgen.c $(pkg-config --cflags --libs gnutls)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define CONN_TIMEOUT_NS (10ull * 1000000000ull) /* per connection (echo) / per handshake (idle) */
#define SCAN_INTERVAL_NS (100ull * 1000000ull)
#define MAX_EVENTS 256
#define MAX_STEPS 256             /* state-machine steps per wakeup and connection (a reply of many records) */
#define IDLE_PARALLEL 128         /* handshakes in progress at once in idle mode */
#define IDLE_HANDSHAKE_CAP_S 300  /* idle mode: all handshakes must be done within this */
#define IDLE_HOLD_CAP_S 3600      /* idle mode: hold at most this long when --duration is not given */
#define BULK_CHUNK 16384
#define BULK_WINDOW (4u << 20)    /* at most this much sent and not yet echoed back */
#define BULK_STALL_NS (10ull * 1000000000ull)
#define PATTERN_LEN 65521u        /* prime, so the pattern does not line up with records */

#define HTTP_HEAD_MAX 2048         /* http mode: the response head must fit in this */

enum mode { M_ECHO, M_BULK, M_IDLE, M_HTTP };
enum state { S_FREE, S_CONNECTING, S_HANDSHAKE, S_SEND, S_RECV, S_BYE, S_HELD };

struct lconn { /* ~40 bytes plus the GnuTLS session */
    gnutls_session_t session;
    uint64_t t_start;
    int fd;
    uint32_t gen;
    uint32_t pos;    /* bytes sent (S_SEND), reply bytes matched (S_RECV) or response head bytes (http) */
    int32_t body_left; /* http mode: body bytes still to come, -1 until the head is complete */
    uint32_t events; /* current epoll interest */
    uint8_t state;
};

/* options */
static enum mode mode = M_ECHO;
static const char *host = "127.0.0.1", *sni = "localhost", *priority_opt = NULL;
static long port = -1;
static long concurrency = 1;
/* --sources N: spread connections over the source addresses 127.0.0.1 .. 127.0.0.N (IPv4 only), since one
 * (source, destination) address pair has only the ephemeral port range (about 28k ports by default). */
static long source_count = 1;
static unsigned long long opened_sockets = 0;
static long long count = 0;
static double duration = 0;
static const char *message = "Hello from client!";
static int line_mode = 0, expect_reverse = 0;
static const char *tls_opt = "any";
static unsigned long long bulk_bytes = 256ull << 20;
static const char *resume_file = NULL; /* --resume FILE: offer saved session data, keep the newest */
static const char *http_path = "/";    /* http mode: the request's path */
static char *http_heads;                /* http mode: HTTP_HEAD_MAX bytes per slot, the response head so far */

/* resumption (echo mode with --resume) */
static gnutls_datum_t saved_session; /* the newest session data, offered by every new connection */
static long long resumed_count;

/* shared state */
static struct sockaddr_storage addr;
static socklen_t addrlen;
static gnutls_certificate_credentials_t cred;
static gnutls_priority_t prio;
static unsigned char *sendbuf, *expected;
static uint32_t sendlen, explen;
static unsigned char scratch[16384];
static char first_error[256];
static char version_seen[64];

static int epfd;
static struct lconn *slots;
static int *free_slots;
static int free_top;
static uint32_t next_gen = 1;
static long active;          /* slots in use and not yet held */
static long long started, ok_count, err_count, held_count;
static uint64_t *lat;        /* latencies of OK connections, ns */
static size_t lat_len, lat_cap;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("tls_loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void note_error(const char *fmt, ...) {
    err_count++;
    if (first_error[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(first_error, sizeof first_error, fmt, ap);
    va_end(ap);
}

static double cpu_seconds(void) { /* this process's user + system time */
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0) return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void json_string(const char *s) {
    if (!s || !*s) { fputs("null", stdout); return; }
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void note_version(gnutls_session_t s) {
    if (version_seen[0]) return;
    const char *v = gnutls_protocol_get_name(gnutls_protocol_get_version(s));
    const char *c = gnutls_cipher_get_name(gnutls_cipher_get(s));
    const char *g = gnutls_group_get_name(gnutls_group_get(s));
    snprintf(version_seen, sizeof version_seen, "%s %s %s", v ? v : "?", c ? c : "?", g ? g : "-");
}

/* A connected (or connecting) socket and a client session on it; returns the fd or -1. */
static int open_session(gnutls_session_t *out, int *connecting) {
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { note_error("socket: %s", strerror(errno)); return -1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *connecting = 0;
    if (source_count > 1) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(opened_sockets++ % (unsigned long long)source_count));
        /* The port is chosen at connect, for the whole 4-tuple: each source address gets the full range. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            note_error("bind source: %s", strerror(errno));
            close(fd);
            return -1;
        }
    }
    if (connect(fd, (struct sockaddr *)&addr, addrlen) < 0) {
        if (errno != EINPROGRESS) {
            note_error("connect: %s", strerror(errno));
            close(fd);
            return -1;
        }
        *connecting = 1;
    }
    gnutls_session_t s;
    int rc = gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NONBLOCK);
    if (rc < 0) { note_error("gnutls_init: %s", gnutls_strerror(rc)); close(fd); return -1; }
    if ((rc = gnutls_priority_set(s, prio)) < 0 ||
        (rc = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred)) < 0 ||
        (rc = gnutls_server_name_set(s, GNUTLS_NAME_DNS, sni, strlen(sni))) < 0) {
        note_error("session setup: %s", gnutls_strerror(rc));
        gnutls_deinit(s);
        close(fd);
        return -1;
    }
    if (resume_file && saved_session.data &&
        (rc = gnutls_session_set_data(s, saved_session.data, saved_session.size)) < 0) {
        note_error("gnutls_session_set_data: %s", gnutls_strerror(rc));
        gnutls_deinit(s);
        close(fd);
        return -1;
    }
    if (mode == M_HTTP) {
        gnutls_datum_t alpn = {(unsigned char *)"http/1.1", 8};
        if ((rc = gnutls_alpn_set_protocols(s, &alpn, 1, 0)) < 0) {
            note_error("gnutls_alpn_set_protocols: %s", gnutls_strerror(rc));
            gnutls_deinit(s);
            close(fd);
            return -1;
        }
    }
    /* No gnutls_session_set_verify_cert: the chain is deliberately not verified (see --help). */
    gnutls_transport_set_int(s, fd);
    *out = s;
    return fd;
}

/* ---------------------------------------------------------------- echo and idle: many connections */

/* --resume: counts a resumed connection and keeps the session's data (under TLS 1.3, once its ticket has
   arrived, which it has once the echo has: the server sends it before the reply) for the next connections. */
static void keep_session(gnutls_session_t s) {
    if (gnutls_session_is_resumed(s)) resumed_count++;
    if (gnutls_protocol_get_version(s) == GNUTLS_TLS1_3 &&
        !(gnutls_session_get_flags(s) & GNUTLS_SFLAGS_SESSION_TICKET))
        return;
    gnutls_datum_t data = {NULL, 0};
    if (gnutls_session_get_data2(s, &data) < 0 || data.size == 0) return;
    gnutls_free(saved_session.data);
    saved_session = data;
}

static void load_session_file(void) {
    FILE *f = fopen(resume_file, "rb");
    if (!f) return; /* none yet: the first connection makes one */
    unsigned char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (n == 0 || n == sizeof buf) return;
    saved_session.data = gnutls_malloc(n);
    if (!saved_session.data) die("out of memory");
    memcpy(saved_session.data, buf, n);
    saved_session.size = (unsigned)n;
}

static void save_session_file(void) {
    if (!saved_session.data) return;
    FILE *f = fopen(resume_file, "wb");
    if (!f) die("cannot write %s: %s", resume_file, strerror(errno));
    fwrite(saved_session.data, 1, saved_session.size, f);
    fclose(f);
}

static void release(struct lconn *c) {
    if (c->session) gnutls_deinit(c->session);
    if (c->fd >= 0) close(c->fd);
    if (c->state != S_HELD) active--;
    c->session = NULL;
    c->fd = -1;
    c->state = S_FREE;
    free_slots[free_top++] = (int)(c - slots);
}

static void fail(struct lconn *c, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    note_error("%s", msg);
    release(c);
}

static void set_interest(struct lconn *c, uint32_t events) {
    if (c->events == events) return;
    struct epoll_event ev = {.events = events, .data.u64 = ((uint64_t)c->gen << 32) | (uint32_t)(c - slots)};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->events = events;
}

static void wait_io(struct lconn *c) {
    set_interest(c, gnutls_record_get_direction(c->session) ? EPOLLOUT : EPOLLIN);
}

static void record_latency(uint64_t ns) {
    if (lat_len == lat_cap) {
        size_t cap = lat_cap ? lat_cap * 2 : 65536;
        uint64_t *p = realloc(lat, cap * sizeof *p);
        if (!p) return; /* keep counting, just without this sample */
        lat = p;
        lat_cap = cap;
    }
    lat[lat_len++] = ns;
}

/* http mode: takes n more response bytes; returns 1 when the response is complete and good, 0 when more is
   needed, -1 (after fail()) when it is not a 200 with a Content-Length body of the announced size. */
static int http_feed(struct lconn *c, const unsigned char *data, size_t n) {
    if (c->body_left < 0) {
        char *head = http_heads + (size_t)(c - slots) * HTTP_HEAD_MAX;
        size_t room = HTTP_HEAD_MAX - 1 - c->pos, take = n < room ? n : room;
        memcpy(head + c->pos, data, take);
        c->pos += (uint32_t)take;
        head[c->pos] = 0;
        char *end = strstr(head, "\r\n\r\n");
        if (!end) {
            if (c->pos == HTTP_HEAD_MAX - 1) { fail(c, "response head longer than %d bytes", HTTP_HEAD_MAX); return -1; }
            return 0;
        }
        if (strncmp(head, "HTTP/1.1 200 ", 13) != 0) {
            char line[64];
            snprintf(line, sizeof line, "%.*s", (int)strcspn(head, "\r\n"), head);
            fail(c, "status: %s", line);
            return -1;
        }
        long length = -1;
        for (char *h = strstr(head, "\r\n"); h && h < end; h = strstr(h + 2, "\r\n"))
            if (strncasecmp(h + 2, "content-length:", 15) == 0) length = strtol(h + 17, NULL, 10);
        if (length < 0 || length > (1 << 30)) { fail(c, "no Content-Length in the response"); return -1; }
        size_t head_len = (size_t)(end + 4 - head);
        size_t body_here = c->pos - head_len;           /* body bytes among those copied into head */
        size_t beyond = n - take;                        /* bytes of this read not copied (head buffer full) */
        c->body_left = (int32_t)length;
        if (body_here + beyond > (size_t)c->body_left) { fail(c, "more bytes than Content-Length"); return -1; }
        c->body_left -= (int32_t)(body_here + beyond);
    } else {
        if (n > (size_t)c->body_left) { fail(c, "more bytes than Content-Length"); return -1; }
        c->body_left -= (int32_t)n;
    }
    return c->body_left == 0;
}

static void drive(struct lconn *c) {
    for (int step = 0; step < MAX_STEPS; step++) {
        switch (c->state) {
        case S_CONNECTING: {
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
            if (err) { fail(c, "connect: %s", strerror(err)); return; }
            c->state = S_HANDSHAKE;
            continue;
        }
        case S_HANDSHAKE: {
            int rc = gnutls_handshake(c->session);
            if (rc == GNUTLS_E_SUCCESS) {
                note_version(c->session);
                if (mode == M_IDLE) {
                    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL); /* held: no more events wanted */
                    c->state = S_HELD;
                    active--;
                    held_count++;
                    return;
                }
                c->state = S_SEND;
                c->pos = 0;
                continue;
            }
            if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) { wait_io(c); return; }
            if (!gnutls_error_is_fatal(rc)) continue;
            fail(c, "handshake: %s", gnutls_strerror(rc));
            return;
        }
        case S_SEND: {
            ssize_t n = gnutls_record_send(c->session, sendbuf + c->pos, sendlen - c->pos);
            if (n > 0) {
                c->pos += (uint32_t)n;
                if (c->pos == sendlen) { c->state = S_RECV; c->pos = 0; c->body_left = -1; }
                continue;
            }
            if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) { wait_io(c); return; }
            fail(c, "send: %s", gnutls_strerror((int)n));
            return;
        }
        case S_RECV: {
            ssize_t n = gnutls_record_recv(c->session, scratch, sizeof scratch);
            if (n > 0 && mode == M_HTTP) {
                int done = http_feed(c, scratch, (size_t)n);
                if (done < 0) return;
                if (done) {
                    record_latency(now_ns() - c->t_start);
                    ok_count++;
                    c->state = S_BYE;
                }
                continue;
            }
            if (n > 0) {
                if (c->pos + (uint64_t)n > explen || memcmp(expected + c->pos, scratch, (size_t)n) != 0) {
                    fail(c, "reply mismatch after %u good bytes (got %zd more, expected %u in all)", c->pos, n,
                         explen);
                    return;
                }
                c->pos += (uint32_t)n;
                if (c->pos == explen) {
                    record_latency(now_ns() - c->t_start);
                    ok_count++;
                    if (resume_file) keep_session(c->session);
                    c->state = S_BYE;
                }
                continue;
            }
            if (n == 0 && mode == M_HTTP) { fail(c, "EOF before the end of the response"); return; }
            if (n == 0) { fail(c, "EOF after %u of %u reply bytes", c->pos, explen); return; }
            if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) { wait_io(c); return; }
            if (!gnutls_error_is_fatal((int)n)) continue;
            fail(c, "recv after %u of %u reply bytes: %s", c->pos, explen, gnutls_strerror((int)n));
            return;
        }
        case S_BYE: {
            int rc = gnutls_bye(c->session, GNUTLS_SHUT_WR);
            if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) { wait_io(c); return; }
            release(c); /* the reply already counted; a failed close_notify does not matter */
            return;
        }
        default:
            return;
        }
    }
    /* Step budget spent (a reply of hundreds of records): level-triggered epoll brings it back while the
       socket has data; if GnuTLS alone holds the rest, the 10 s timeout ends it. */
}

static void start_one(uint64_t now) {
    int idx = free_slots[--free_top];
    struct lconn *c = &slots[idx];
    started++;
    active++;
    c->state = S_CONNECTING; /* so release() accounts correctly on failure */
    c->fd = -1;
    c->session = NULL;
    int connecting;
    int fd = open_session(&c->session, &connecting);
    if (fd < 0) { /* open_session counted the error */
        release(c);
        return;
    }
    c->fd = fd;
    c->t_start = now;
    c->gen = next_gen++;
    if (next_gen == 0) next_gen = 1;
    c->pos = 0;
    c->state = connecting ? S_CONNECTING : S_HANDSHAKE;
    c->events = connecting ? EPOLLOUT : EPOLLIN;
    struct epoll_event ev = {.events = c->events, .data.u64 = ((uint64_t)c->gen << 32) | (uint32_t)idx};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) { fail(c, "epoll_ctl: %s", strerror(errno)); return; }
    if (!connecting) drive(c);
}

static void expire(uint64_t now) {
    for (long i = 0; i < concurrency; i++) {
        struct lconn *c = &slots[i];
        if (c->state == S_FREE || c->state == S_HELD) continue;
        if (now - c->t_start > CONN_TIMEOUT_NS) {
            static const char *names[] = {"free", "connect", "handshake", "send", "reply", "bye", "held"};
            if (c->state == S_BYE) { release(c); continue; } /* already counted OK */
            fail(c, "timeout (10 s) in %s", names[c->state]);
        }
    }
}

static void dispatch(struct epoll_event *events, int n) {
    for (int i = 0; i < n; i++) {
        uint32_t idx = (uint32_t)events[i].data.u64, gen = (uint32_t)(events[i].data.u64 >> 32);
        if (idx >= (uint32_t)concurrency) continue;
        struct lconn *c = &slots[idx];
        if (c->state == S_FREE || c->state == S_HELD || c->gen != gen) continue; /* stale */
        drive(c);
    }
}

static void setup_slots(void) {
    slots = calloc((size_t)concurrency, sizeof *slots);
    free_slots = malloc((size_t)concurrency * sizeof *free_slots);
    if (!slots || !free_slots) die("out of memory");
    for (long i = concurrency - 1; i >= 0; i--) {
        slots[i].fd = -1;
        free_slots[free_top++] = (int)i;
    }
    if (mode == M_HTTP && !(http_heads = malloc((size_t)concurrency * HTTP_HEAD_MAX))) die("out of memory");
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1: %s", strerror(errno));
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_ms(double p) { /* nearest rank on the sorted samples */
    size_t rank = (size_t)(p * (double)lat_len + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > lat_len) rank = lat_len;
    return (double)lat[rank - 1] / 1e6;
}

/* One turn of a driving loop: wait up to 20 ms for events, handle them, and expire timed-out connections at
 * most every SCAN_INTERVAL_NS. Returns the time after the turn. */
static uint64_t poll_once(struct epoll_event *events, uint64_t *last_scan) {
    int n = epoll_wait(epfd, events, MAX_EVENTS, 20);
    if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
    if (n > 0) dispatch(events, n);
    uint64_t now = now_ns();
    if (now - *last_scan >= SCAN_INTERVAL_NS) {
        expire(now);
        *last_scan = now;
    }
    return now;
}

static int run_echo(void) {
    setup_slots();
    struct epoll_event events[MAX_EVENTS];
    uint64_t t0 = now_ns(), last_scan = t0;
    uint64_t stop_at = duration > 0 ? t0 + (uint64_t)(duration * 1e9) : UINT64_MAX;
    for (;;) { /* ends when no more may start and none is in flight; each lives at most 10 s */
        uint64_t now = now_ns();
        int can_start = (count == 0 || started < count) && now < stop_at;
        for (long k = 0; can_start && k < concurrency && free_top > 0; k++) {
            start_one(now);
            can_start = count == 0 || started < count;
        }
        if (!can_start && active == 0) break;
        now = poll_once(events, &last_scan);
    }
    double elapsed = (double)(now_ns() - t0) / 1e9;
    qsort(lat, lat_len, sizeof *lat, cmp_u64);
    if (resume_file) {
        save_session_file();
        printf("{\"resumed\":%lld,", resumed_count);
    } else {
        printf("{");
    }
    printf("\"mode\":\"%s\",", mode == M_HTTP ? "http" : "echo");
    printf("\"ok\":%lld,\"errors\":%lld,\"elapsed_s\":%.3f,\"rate\":%.1f,", ok_count, err_count,
           elapsed, elapsed > 0 ? (double)ok_count / elapsed : 0.0);
    if (lat_len) printf("\"p50_ms\":%.3f,\"p99_ms\":%.3f,", percentile_ms(0.50), percentile_ms(0.99));
    else printf("\"p50_ms\":null,\"p99_ms\":null,");
    printf("\"first_error\":");
    json_string(first_error);
    printf(",\"concurrency\":%ld,\"started\":%lld,\"cpu_s\":%.3f,\"tls\":", concurrency, started, cpu_seconds());
    json_string(version_seen);
    printf("}\n");
    fflush(stdout);
    return err_count == 0 && ok_count > 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- idle */

static int run_idle(void) {
    setup_slots();
    struct epoll_event events[MAX_EVENTS];
    uint64_t t0 = now_ns(), last_scan = t0;
    uint64_t cap = t0 + (uint64_t)IDLE_HANDSHAKE_CAP_S * 1000000000ull;
    /* Phase 1: handshakes, at most IDLE_PARALLEL in progress (the listen backlog is finite). */
    for (;;) {
        uint64_t now = now_ns();
        for (int k = 0; k < IDLE_PARALLEL && started < concurrency && active < IDLE_PARALLEL && free_top > 0; k++)
            start_one(now);
        if (started >= concurrency && active == 0) break;
        if (now >= cap) break;
        now = poll_once(events, &last_scan);
    }
    for (long i = 0; i < concurrency; i++) /* only if the cap was hit */
        if (slots[i].state != S_FREE && slots[i].state != S_HELD) fail(&slots[i], "handshake phase cap reached");
    double hs_elapsed = (double)(now_ns() - t0) / 1e9;
    int exit_code = 0;
    if (err_count == 0) {
        printf("ready %lld\n", held_count);
        fflush(stdout);
        /* Phase 2: hold until stdin EOF or --duration. */
        uint64_t hold_start = now_ns();
        uint64_t hold_end = hold_start + (uint64_t)((duration > 0 ? duration : IDLE_HOLD_CAP_S) * 1e9);
        int watch_stdin = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) < 0) {
            /* not pollable (a regular file or /dev/null): at EOF now if a read returns 0 */
            char b[512];
            if (read(0, b, sizeof b) == 0) hold_end = hold_start;
            watch_stdin = 0;
        }
        while (now_ns() < hold_end) {
            uint64_t left_ms = (hold_end - now_ns()) / 1000000ull;
            int n = epoll_wait(epfd, events, MAX_EVENTS, (int)(left_ms > 1000 ? 1000 : left_ms + 1));
            if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
            int eof = 0;
            for (int i = 0; i < n; i++) {
                if (events[i].data.u64 != UINT64_MAX || !watch_stdin) continue;
                char b[512];
                ssize_t r = read(0, b, sizeof b);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) eof = 1;
            }
            if (eof) break;
        }
        /* Which connections did the server keep? (It may have sent tickets: data is fine, EOF is not.) */
        long long alive = 0, dropped = 0;
        for (long i = 0; i < concurrency; i++) {
            struct lconn *c = &slots[i];
            if (c->state != S_HELD) continue;
            char b;
            ssize_t r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
            if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) alive++;
            else {
                dropped++;
                note_error("server dropped a held connection: %s", r == 0 ? "EOF" : strerror(errno));
            }
        }
        held_count = alive;
        (void)dropped;
    } else {
        exit_code = 1;
    }
    for (long i = 0; i < concurrency; i++) {
        struct lconn *c = &slots[i];
        if (c->state != S_HELD) continue;
        gnutls_bye(c->session, GNUTLS_SHUT_WR); /* one try; the socket buffer is empty */
        release(c);
    }
    printf("{\"mode\":\"idle\",\"held\":%lld,\"errors\":%lld,\"handshake_s\":%.3f,\"first_error\":", held_count,
           err_count, hs_elapsed);
    json_string(first_error);
    printf(",\"cpu_s\":%.3f,\"tls\":", cpu_seconds());
    json_string(version_seen);
    printf("}\n");
    fflush(stdout);
    return err_count ? 1 : exit_code;
}

/* ---------------------------------------------------------------- bulk: one connection, poll */

static int wait_fd(int fd, short events, int ms) {
    struct pollfd p = {.fd = fd, .events = events};
    return poll(&p, 1, ms);
}

static int run_bulk(void) {
    unsigned char *pat = malloc(PATTERN_LEN + BULK_CHUNK);
    if (!pat) die("out of memory");
    for (uint32_t i = 0; i < PATTERN_LEN + BULK_CHUNK; i++) {
        uint32_t j = i % PATTERN_LEN;
        pat[i] = (unsigned char)(j * 131u + (j >> 8) + 7u);
    }
    uint64_t t0 = now_ns();
    uint64_t hard_end = t0 + (uint64_t)((duration > 0 ? duration : 3600) * 1e9);
    gnutls_session_t s = NULL;
    int connecting, okflag = 0;
    double elapsed = 0;
    int fd = open_session(&s, &connecting);
    if (fd < 0) goto out;
    if (connecting) {
        if (wait_fd(fd, POLLOUT, 10000) <= 0) { note_error("connect: timeout"); goto out; }
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { note_error("connect: %s", strerror(err)); goto out; }
    }
    for (;;) { /* handshake, bounded by CONN_TIMEOUT_NS */
        int rc = gnutls_handshake(s);
        if (rc == GNUTLS_E_SUCCESS) break;
        if (now_ns() - t0 > CONN_TIMEOUT_NS) { note_error("handshake: timeout"); goto out; }
        if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
            wait_fd(fd, gnutls_record_get_direction(s) ? POLLOUT : POLLIN, 1000);
            continue;
        }
        if (gnutls_error_is_fatal(rc)) { note_error("handshake: %s", gnutls_strerror(rc)); goto out; }
    }
    note_version(s);

    uint64_t sent = 0, rcvd = 0, total = bulk_bytes;
    uint64_t t_data = now_ns(), last_progress = t_data;
    int write_blocked = 0;
    while (rcvd < total) { /* bounded by the stall timeout and hard_end */
        int progress = 0;
        for (int k = 0; k < 256; k++) {
            ssize_t n = gnutls_record_recv(s, scratch, sizeof scratch);
            if (n > 0) {
                uint32_t off = (uint32_t)(rcvd % PATTERN_LEN);
                if (rcvd + (uint64_t)n > sent || memcmp(pat + off, scratch, (size_t)n) != 0) {
                    note_error("echo mismatch at byte offset %llu", (unsigned long long)rcvd);
                    goto out;
                }
                rcvd += (uint64_t)n;
                progress = 1;
                continue;
            }
            if (n == 0) {
                note_error("EOF after %llu of %llu bytes", (unsigned long long)rcvd, (unsigned long long)total);
                goto out;
            }
            if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) break;
            if (gnutls_error_is_fatal((int)n)) { note_error("recv: %s", gnutls_strerror((int)n)); goto out; }
        }
        write_blocked = 0;
        for (int k = 0; k < 256 && sent < total && sent - rcvd < BULK_WINDOW; k++) {
            size_t chunk = total - sent < BULK_CHUNK ? (size_t)(total - sent) : BULK_CHUNK;
            /* After EAGAIN GnuTLS wants the same arguments again: they depend on `sent` only, so they are. */
            ssize_t n = gnutls_record_send(s, pat + sent % PATTERN_LEN, chunk);
            if (n > 0) { sent += (uint64_t)n; progress = 1; continue; }
            if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) { write_blocked = 1; break; }
            note_error("send: %s", gnutls_strerror((int)n));
            goto out;
        }
        uint64_t now = now_ns();
        if (progress) last_progress = now;
        else if (now - last_progress > BULK_STALL_NS) {
            note_error("stalled (10 s) after %llu sent, %llu received", (unsigned long long)sent,
                       (unsigned long long)rcvd);
            goto out;
        }
        if (now > hard_end) { note_error("--duration reached before the transfer finished"); goto out; }
        if (rcvd < total && !progress) wait_fd(fd, (short)(POLLIN | (write_blocked ? POLLOUT : 0)), 1000);
    }
    elapsed = (double)(now_ns() - t_data) / 1e9;
    okflag = 1;
    for (int k = 0; k < 100; k++) { /* close_notify, without waiting for the server's */
        int rc = gnutls_bye(s, GNUTLS_SHUT_WR);
        if (rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED) break;
        wait_fd(fd, POLLOUT, 100);
    }
out:
    if (s) gnutls_deinit(s);
    if (fd >= 0) close(fd);
    free(pat);
    printf("{\"mode\":\"bulk\",\"bytes\":%llu,\"elapsed_s\":%.3f,\"mb_per_s\":%.1f,\"ok\":%s,\"first_error\":",
           bulk_bytes, elapsed, okflag && elapsed > 0 ? (double)bulk_bytes / 1e6 / elapsed : 0.0,
           okflag ? "true" : "false");
    json_string(first_error);
    printf(",\"cpu_s\":%.3f,\"tls\":", cpu_seconds());
    json_string(version_seen);
    printf("}\n");
    fflush(stdout);
    return okflag ? 0 : 1;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f) {
    fprintf(f,
        "usage: tls_loadgen --port P [--host 127.0.0.1] [--mode echo|bulk|idle|http] [options]\n"
        "  --host ADDR          IPv4 or IPv6 literal (no name resolution); default 127.0.0.1\n"
        "  --sni NAME           server name sent (default localhost)\n"
        "  --mode echo          keep --concurrency connections in flight: connect, handshake, send the message,\n"
        "                       read the whole expected reply, bye (SHUT_WR), close. Stops starting after\n"
        "                       --count connections or --duration seconds (default: --count 1000), lets the\n"
        "                       rest finish (10 s per connection at most). Latency: connect start -> reply.\n"
        "                       Prints {\"mode\":\"echo\",\"ok\",\"errors\",\"elapsed_s\",\"rate\",\"p50_ms\",\"p99_ms\",...}\n"
        "  --mode bulk          one connection: send --bytes (default 268435456) of a pattern in 16 KiB writes,\n"
        "                       read and verify the echo concurrently (at most 4 MiB in flight). Needs a\n"
        "                       streaming echo server. Prints {\"mode\":\"bulk\",\"bytes\",\"elapsed_s\",\"mb_per_s\",\"ok\"}\n"
        "                       (timed from the end of the handshake).\n"
        "  --mode idle          open --concurrency connections (128 handshakes at a time), print 'ready N' when\n"
        "                       all are up (or the final JSON at once if any failed), hold them until stdin EOF\n"
        "                       or --duration seconds (at most 3600), close, print {\"mode\":\"idle\",\"held\",\"errors\"}.\n"
"  --mode http          like echo, but each connection offers ALPN http/1.1, sends one request (GET --path,\n"
        "                       Host: --sni, Connection: close) and counts when the response is complete: status\n"
        "                       200 and Content-Length bytes of body. Prints {\"mode\":\"http\",...} as echo does.\n"
        "  --path PATH          http: the request's path (default /)\n"
        "  --resume FILE        echo: offer the session data in FILE (if any) on every connection, keep the\n"
        "                       newest (a TLS 1.3 ticket, a TLS 1.2 ticket) for the next ones, write it back to\n"
        "                       FILE at the end; the JSON then starts with \"resumed\" (connections resumed)\n"
        "  --concurrency C      connections in flight (echo) or held (idle); default 1\n"
        "  --sources N          bind connections to 127.0.0.1 .. 127.0.0.N in turn (IPv4; more than one\n"
        "                       source/destination pair's ~28k ephemeral ports, e.g. 100,000 idle)\n"
        "  --count N            echo: connections to start (0 = no limit)\n"
        "  --duration S         echo: stop starting after S seconds; idle: hold time; bulk: overall cap\n"
        "  --message TEXT       default 'Hello from client!'\n"
        "  --line               append '\\n' to the message (line-based servers: gnutls-serv --echo, s_server)\n"
        "  --expect echo|reverse  reply expected: the same bytes, or the line reversed plus '\\n'\n"
        "                       (openssl s_server -rev; needs --line)\n"
        "  --tls 1.2|1.3|any    force the protocol version (any = GnuTLS NORMAL)\n"
        "  --priority STRING    client priority string (overrides --tls)\n"
        "  --bytes B            bulk transfer size\n"
        "The server's certificate chain and name are NOT verified (this is a load generator; no\n"
        "gnutls_session_set_verify_cert). GnuTLS still verifies the handshake signature made with the\n"
        "server's key; that cannot be turned off, so each full handshake costs the client one verification.\n"
        "Exit status 0 if every connection succeeded, 1 otherwise (the JSON line is printed either way).\n");
}

static void build_messages(void) {
    size_t mlen = strlen(message);
    sendlen = (uint32_t)(mlen + (line_mode ? 1 : 0));
    sendbuf = malloc(sendlen + 1);
    expected = malloc(sendlen + 2);
    if (!sendbuf || !expected) die("out of memory");
    memcpy(sendbuf, message, mlen);
    if (line_mode) sendbuf[mlen] = '\n';
    if (!expect_reverse) {
        memcpy(expected, sendbuf, sendlen);
        explen = sendlen;
    } else { /* openssl s_server -rev: strip trailing CR/LF, reverse, add '\n' */
        size_t n = mlen;
        while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == '\r')) n--;
        for (size_t i = 0; i < n; i++) expected[i] = (unsigned char)message[n - 1 - i];
        expected[n] = '\n';
        explen = (uint32_t)(n + 1);
    }
}

int main(int argc, char **argv) {
    int count_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
#define NEEDV() do { if (!v) { usage(stderr); return 2; } i++; } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--host")) { NEEDV(); host = v; }
        else if (!strcmp(a, "--sni")) { NEEDV(); sni = v; }
        else if (!strcmp(a, "--port")) { NEEDV(); port = strtol(v, &end, 10); }
        else if (!strcmp(a, "--mode")) {
            NEEDV();
            if (!strcmp(v, "echo")) mode = M_ECHO;
            else if (!strcmp(v, "bulk")) mode = M_BULK;
            else if (!strcmp(v, "idle")) mode = M_IDLE;
            else if (!strcmp(v, "http")) mode = M_HTTP;
            else die("bad --mode %s", v);
        }
        else if (!strcmp(a, "--concurrency")) { NEEDV(); concurrency = strtol(v, &end, 10); }
        else if (!strcmp(a, "--sources")) { NEEDV(); source_count = strtol(v, &end, 10); }
        else if (!strcmp(a, "--count")) { NEEDV(); count = strtoll(v, &end, 10); count_given = 1; }
        else if (!strcmp(a, "--duration")) { NEEDV(); duration = strtod(v, &end); }
        else if (!strcmp(a, "--message")) { NEEDV(); message = v; }
        else if (!strcmp(a, "--line")) line_mode = 1;
        else if (!strcmp(a, "--resume")) { NEEDV(); resume_file = v; }
        else if (!strcmp(a, "--path")) { NEEDV(); http_path = v; }
        else if (!strcmp(a, "--expect")) {
            NEEDV();
            if (!strcmp(v, "echo")) expect_reverse = 0;
            else if (!strcmp(v, "reverse")) expect_reverse = 1;
            else die("bad --expect %s", v);
        }
        else if (!strcmp(a, "--tls")) { NEEDV(); tls_opt = v; }
        else if (!strcmp(a, "--priority")) { NEEDV(); priority_opt = v; }
        else if (!strcmp(a, "--bytes")) { NEEDV(); bulk_bytes = strtoull(v, &end, 10); }
        else { usage(stderr); return 2; }
        if (end && *end) die("bad value for %s: %s", a, v);
#undef NEEDV
    }
    if (port <= 0 || port > 65535) die("--port 1..65535 is required");
    if (concurrency < 1 || concurrency > 1000000) die("bad --concurrency");
    if (count < 0 || duration < 0) die("bad --count or --duration");
    if (source_count < 1 || source_count > 254) die("bad --sources (1..254)");
    if ((mode == M_ECHO || mode == M_HTTP) && !count_given && duration == 0) count = 1000;
    if ((mode == M_ECHO || mode == M_HTTP) && count == 0 && duration == 0) die("--count 0 needs a --duration");
    if (bulk_bytes == 0) die("bad --bytes");
    if (expect_reverse && !line_mode) die("--expect reverse needs --line (the server replies per line)");
    if (strlen(message) == 0 && !line_mode) die("empty --message");

    memset(&addr, 0, sizeof addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        addrlen = sizeof *a4;
    } else if (source_count > 1) {
        die("--sources needs an IPv4 --host");
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        addrlen = sizeof *a6;
    } else die("--host must be an IPv4 or IPv6 literal: %s", host);

    const char *pstr = priority_opt;
    if (!pstr) {
        if (!strcmp(tls_opt, "1.2")) pstr = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
        else if (!strcmp(tls_opt, "1.3")) pstr = "NORMAL:-VERS-ALL:+VERS-TLS1.3";
        else if (!strcmp(tls_opt, "any")) pstr = "NORMAL";
        else die("bad --tls %s (1.2, 1.3 or any)", tls_opt);
    }

    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    int rc;
    if ((rc = gnutls_global_init()) < 0) die("gnutls_global_init: %s", gnutls_strerror(rc));
    if ((rc = gnutls_certificate_allocate_credentials(&cred)) < 0) die("credentials: %s", gnutls_strerror(rc));
    const char *err_pos = NULL;
    if ((rc = gnutls_priority_init(&prio, pstr, &err_pos)) < 0)
        die("bad priority string at '%s': %s", err_pos ? err_pos : "?", gnutls_strerror(rc));
    build_messages();
    if (mode == M_HTTP) { /* the request replaces the message */
        if (strlen(http_path) > 1024 || http_path[0] != '/') die("bad --path");
        char request[1200];
        int len = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                           http_path, sni);
        if (len <= 0 || (size_t)len >= sizeof request) die("request too long");
        free(sendbuf);
        sendbuf = (unsigned char *)strdup(request);
        if (!sendbuf) die("out of memory");
        sendlen = (uint32_t)len;
    }

    if (resume_file && mode != M_ECHO) die("--resume is for --mode echo");
    if (resume_file) load_session_file();
    int status = mode == M_ECHO || mode == M_HTTP ? run_echo() : mode == M_BULK ? run_bulk() : run_idle();

    free(slots);
    free(free_slots);
    free(http_heads);
    free(lat);
    free(sendbuf);
    free(expected);
    gnutls_priority_deinit(prio);
    gnutls_certificate_free_credentials(cred);
    gnutls_global_deinit();
    return status;
}
