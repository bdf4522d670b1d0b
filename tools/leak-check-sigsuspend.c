/* LD_PRELOAD shim for tools/leak-check: valgrind 3.19 crashes in libdispatch's sigsuspend (the mask it is
 * given points where valgrind does not expect); copying the mask to this frame's stack first gets past it.
 * Build: cc -shared -fPIC -O2 -o sigsuspend-shim.so leak-check-sigsuspend.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>

int sigsuspend(const sigset_t *mask) {
    static int (*real)(const sigset_t *);
    if (!real) real = (int (*)(const sigset_t *))dlsym(RTLD_NEXT, "sigsuspend");
    sigset_t copy = *mask;
    return real(&copy);
}
