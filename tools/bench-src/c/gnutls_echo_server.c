/*
 * gnutls_echo_server.c - "the floor": the leanest reasonable GnuTLS echo server, for benchmarking.
 *
 * Single thread, non-blocking sockets, level-triggered epoll, GnuTLS on the socket fd
 * (gnutls_transport_set_int) with GNUTLS_NONBLOCK. One certificate credential, one priority cache and
 * one session-ticket key, built at start-up (tickets enabled on every session, as the Swift server does).
 *
 * Per connection: handshake, read one message (whatever the first successful gnutls_record_recv
 * returns), write it back, gnutls_bye(GNUTLS_SHUT_WR), close. With --stream: echo everything until the
 * client's close_notify/EOF, then bye + close.
 *
 * Accepted sockets get TCP_NODELAY and the listen backlog is 1024, as in the Swift tls-server.
 * No timeouts: a client that connects and sends nothing holds its connection until it leaves (the
 * benchmark's idle test relies on that).
 *
 * Build: cc -std=c11 -O2 -Wall -Wextra gnutls_echo_server.c $(pkg-config --cflags --libs gnutls)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#define DEFAULT_PRIORITY                                                                              \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"               \
    "+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:+DHE-RSA:-GROUP-ALL:"          \
    "+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-FFDHE2048:-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1"

#define SCRATCH_SIZE 16384  /* one TLS record's worth of plaintext */
#define MAX_EVENTS 256
#define MAX_ACCEPTS_PER_WAKEUP 64
#define MAX_STEPS_PER_DRIVE 64 /* state-machine steps per connection before yielding to others */
#define LISTEN_BACKLOG 1024

enum state { ST_HANDSHAKE, ST_RECV, ST_SEND, ST_BYE };

struct conn {
    gnutls_session_t session;
    unsigned char *buf; /* only while a send is pending after EAGAIN or a partial write */
    uint32_t len, off;  /* bytes to send, bytes sent */
    uint32_t gen;       /* matches the epoll data, guards against stale events after fd reuse */
    uint32_t events;    /* current epoll interest */
    uint8_t state;
    uint8_t queued;     /* in the "run again" list */
};

static struct conn **conns;  /* indexed by fd */
static int max_fds;
static int epfd;
static int stream_mode;
static uint32_t next_gen = 1;
static gnutls_certificate_credentials_t cred;
static gnutls_priority_t prio;
static gnutls_datum_t ticket_key;
static unsigned char scratch[SCRATCH_SIZE];

/* fds whose connections have more work without waiting for the socket (step budget ran out) */
static int *again, *again_next;
static int again_len, again_next_len;

static void die(const char *what, const char *detail) {
    fprintf(stderr, "gnutls_echo_server: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static uint64_t ev_data(int fd, uint32_t gen) { return ((uint64_t)gen << 32) | (uint32_t)fd; }

static void close_conn(int fd) {
    struct conn *c = conns[fd];
    if (!c) return;
    conns[fd] = NULL;
    gnutls_deinit(c->session);
    free(c->buf);
    free(c);
    close(fd); /* also removes it from the epoll set */
}

static void set_interest(int fd, struct conn *c, uint32_t events) {
    if (c->events == events) return;
    struct epoll_event ev = {.events = events, .data.u64 = ev_data(fd, c->gen)};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) == 0) c->events = events;
}

/* Wait for the socket in the direction GnuTLS was blocked on. */
static void wait_io(int fd, struct conn *c) {
    set_interest(fd, c, gnutls_record_get_direction(c->session) ? EPOLLOUT : EPOLLIN);
}

/* Start sending len bytes from data; on EAGAIN or a partial write the rest is copied to c->buf. */
static int send_from(struct conn *c, const unsigned char *data, uint32_t len) {
    c->len = len;
    c->off = 0;
    ssize_t n = gnutls_record_send(c->session, data, len);
    if (n == (ssize_t)len) return 1; /* all sent */
    if (n < 0 && n != GNUTLS_E_AGAIN && n != GNUTLS_E_INTERRUPTED) return -1;
    /* GnuTLS wants the same parameters again after EAGAIN, and a partial write needs the rest: keep them. */
    c->buf = malloc(len);
    if (!c->buf) return -1;
    memcpy(c->buf, data, len);
    if (n > 0) c->off = (uint32_t)n;
    c->state = ST_SEND;
    return 0;
}

/* Run the connection's state machine until it must wait, closes, or its step budget is spent. */
static void drive(int fd) {
    struct conn *c = conns[fd];
    for (int step = 0; step < MAX_STEPS_PER_DRIVE; step++) {
        switch (c->state) {
        case ST_HANDSHAKE: {
            int rc = gnutls_handshake(c->session);
            if (rc == GNUTLS_E_SUCCESS) { c->state = ST_RECV; continue; }
            if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) { wait_io(fd, c); return; }
            if (!gnutls_error_is_fatal(rc)) continue; /* e.g. a warning alert */
            gnutls_alert_send_appropriate(c->session, rc); /* one try: the peer learns why */
            close_conn(fd);
            return;
        }
        case ST_RECV: {
            ssize_t n = gnutls_record_recv(c->session, scratch, sizeof scratch);
            if (n > 0) {
                int r = send_from(c, scratch, (uint32_t)n);
                if (r < 0) { close_conn(fd); return; }
                if (r == 0) continue; /* ST_SEND: retry (partial) or wait (EAGAIN) there */
                c->state = stream_mode ? ST_RECV : ST_BYE;
                continue;
            }
            if (n == 0) { /* close_notify or EOF */
                if (stream_mode) { c->state = ST_BYE; continue; }
                close_conn(fd); /* one-shot mode, and the client sent nothing */
                return;
            }
            if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) { wait_io(fd, c); return; }
            if (n != GNUTLS_E_REHANDSHAKE && !gnutls_error_is_fatal((int)n)) continue;
            close_conn(fd); /* fatal error, premature EOF, or a renegotiation attempt */
            return;
        }
        case ST_SEND: {
            ssize_t n = gnutls_record_send(c->session, c->buf + c->off, c->len - c->off);
            if (n > 0) {
                c->off += (uint32_t)n;
                if (c->off < c->len) continue;
                free(c->buf);
                c->buf = NULL;
                c->state = stream_mode ? ST_RECV : ST_BYE;
                continue;
            }
            if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) { wait_io(fd, c); return; }
            close_conn(fd);
            return;
        }
        case ST_BYE: {
            int rc = gnutls_bye(c->session, GNUTLS_SHUT_WR);
            if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) { wait_io(fd, c); return; }
            close_conn(fd); /* done (or failed: nothing more to do either way) */
            return;
        }
        }
    }
    /* Budget spent with work left (a fast --stream peer): run it again after the other ready sockets. */
    if (!c->queued) {
        c->queued = 1;
        again_next[again_next_len++] = fd;
    }
}

static void accept_one(int lfd, int fd) {
    if (fd >= max_fds) { close(fd); return; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (!c) { close(fd); return; }
    if (gnutls_init(&c->session, GNUTLS_SERVER | GNUTLS_NONBLOCK) < 0) { free(c); close(fd); return; }
    if (gnutls_priority_set(c->session, prio) < 0 ||
        gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, cred) < 0 ||
        gnutls_session_ticket_enable_server(c->session, &ticket_key) < 0) {
        gnutls_deinit(c->session);
        free(c);
        close(fd);
        return;
    }
    gnutls_certificate_server_set_request(c->session, GNUTLS_CERT_IGNORE);
    gnutls_transport_set_int(c->session, fd);
    c->gen = next_gen++;
    if (next_gen == 0) next_gen = 1;
    c->state = ST_HANDSHAKE;
    c->events = EPOLLIN;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ev_data(fd, c->gen)};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        gnutls_deinit(c->session);
        free(c);
        close(fd);
        return;
    }
    conns[fd] = c;
    (void)lfd;
    drive(fd); /* the ClientHello is often already there */
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: gnutls_echo_server --cert FILE --key FILE [--port P] [--priority STRING] [--stream]\n"
            "  Listens on 127.0.0.1:P (0 = ephemeral), prints 'listening on 127.0.0.1:PORT' once accepting.\n"
            "  Per connection: handshake, read one message, write it back, bye (SHUT_WR), close.\n"
            "  --stream   echo everything until the client's close_notify/EOF, then bye + close\n"
            "  --priority GnuTLS priority string (default: TLS 1.3 + 1.2, forward-secret AEAD suites)\n"
            "  Exits 0 on SIGTERM/SIGINT.\n");
}

int main(int argc, char **argv) {
    const char *cert = NULL, *key = NULL, *priority = DEFAULT_PRIORITY;
    long port = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--port") && has_val) {
            char *end;
            port = strtol(argv[++i], &end, 10);
            if (*end || port < 0 || port > 65535) die("bad --port", argv[i]);
        } else if (!strcmp(a, "--cert") && has_val) cert = argv[++i];
        else if (!strcmp(a, "--key") && has_val) key = argv[++i];
        else if (!strcmp(a, "--priority") && has_val) priority = argv[++i];
        else if (!strcmp(a, "--stream")) stream_mode = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else { usage(stderr); return 2; }
    }
    if (!cert || !key) { usage(stderr); return 2; }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    max_fds = (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1048576) ? 1048576 : (int)rl.rlim_cur;
    conns = calloc((size_t)max_fds, sizeof *conns);
    again = malloc((size_t)max_fds * sizeof *again);
    again_next = malloc((size_t)max_fds * sizeof *again_next);
    if (!conns || !again || !again_next) die("out of memory", NULL);

    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) die("sigprocmask", strerror(errno));
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) die("signalfd", strerror(errno));

    int rc;
    if ((rc = gnutls_global_init()) < 0) die("gnutls_global_init", gnutls_strerror(rc));
    if ((rc = gnutls_certificate_allocate_credentials(&cred)) < 0) die("credentials", gnutls_strerror(rc));
    if ((rc = gnutls_certificate_set_x509_key_file(cred, cert, key, GNUTLS_X509_FMT_PEM)) < 0)
        die("cannot load the certificate and key", gnutls_strerror(rc));
    gnutls_certificate_set_known_dh_params(cred, GNUTLS_SEC_PARAM_MEDIUM); /* for DHE-RSA under TLS 1.2 */
    const char *err_pos = NULL;
    if ((rc = gnutls_priority_init(&prio, priority, &err_pos)) < 0) {
        fprintf(stderr, "gnutls_echo_server: bad priority string at '%s': %s\n", err_pos ? err_pos : "?",
                gnutls_strerror(rc));
        return 1;
    }
    if ((rc = gnutls_session_ticket_key_generate(&ticket_key)) < 0) die("ticket key", gnutls_strerror(rc));

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket", strerror(errno));
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind", strerror(errno));
    if (listen(lfd, LISTEN_BACKLOG) < 0) die("listen", strerror(errno));
    socklen_t slen = sizeof sa;
    if (getsockname(lfd, (struct sockaddr *)&sa, &slen) < 0) die("getsockname", strerror(errno));

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ev_data(lfd, 0)};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll_ctl", strerror(errno));
    ev.data.u64 = ev_data(sfd, 0);
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev) < 0) die("epoll_ctl", strerror(errno));
    /* A spare fd: on EMFILE, free it to accept-and-close, so the listener does not spin. */
    int spare = open("/dev/null", O_RDONLY | O_CLOEXEC);

    printf("listening on 127.0.0.1:%u\n", (unsigned)ntohs(sa.sin_port));
    fflush(stdout);

    struct epoll_event events[MAX_EVENTS];
    int running = 1;
    while (running) { /* runs until SIGTERM/SIGINT */
        int n = epoll_wait(epfd, events, MAX_EVENTS, again_next_len ? 0 : -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            int fd = (int)(uint32_t)events[i].data.u64;
            uint32_t gen = (uint32_t)(events[i].data.u64 >> 32);
            if (fd == sfd) {
                running = 0;
            } else if (fd == lfd) {
                for (int k = 0; k < MAX_ACCEPTS_PER_WAKEUP; k++) {
                    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd >= 0) { accept_one(lfd, cfd); continue; }
                    if ((errno == EMFILE || errno == ENFILE) && spare >= 0) {
                        close(spare);
                        cfd = accept(lfd, NULL, NULL);
                        if (cfd >= 0) close(cfd);
                        spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
                        continue;
                    }
                    break; /* EAGAIN, or an error on one pending connection: try again on the next wakeup */
                }
            } else if (fd >= 0 && fd < max_fds && conns[fd] && conns[fd]->gen == gen) {
                if (conns[fd]->queued) continue; /* runs from the again list below */
                drive(fd);
            }
        }
        /* Connections whose step budget ran out in the previous round. */
        int *tmp = again;
        again = again_next;
        again_len = again_next_len;
        again_next = tmp;
        again_next_len = 0;
        for (int i = 0; i < again_len; i++) {
            int fd = again[i];
            if (conns[fd]) {
                conns[fd]->queued = 0;
                drive(fd);
            }
        }
        again_len = 0;
    }

    for (int fd = 0; fd < max_fds; fd++) close_conn(fd);
    close(lfd);
    close(epfd);
    close(sfd);
    if (spare >= 0) close(spare);
    gnutls_free(ticket_key.data);
    gnutls_priority_deinit(prio);
    gnutls_certificate_free_credentials(cred);
    gnutls_global_deinit();
    free(conns);
    free(again);
    free(again_next);
    return 0;
}
