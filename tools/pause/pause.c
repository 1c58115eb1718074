/*
 * pause: the sandbox ("pause") container of kube-local's real node. It holds
 * a pod's namespaces open and does nothing else, as Kubernetes' own pause
 * does: sleep until a signal; SIGINT and SIGTERM end it, and as PID 1 of the
 * pod (shared PID namespace) it reaps the zombies it inherits. Built static
 * so the image is this one file (hack/make-image pause).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig)
{
    (void)sig;
    _exit(0);
}

static void on_child(int sig)
{
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv)
{
    struct sigaction stop = {.sa_handler = on_stop};
    struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};

    if (argc > 1 && argv[1][0] == '-' && argv[1][1] == 'v') {
        puts("pause (provisio kube-local)");
        return 0;
    }
    if (getpid() != 1)
        fputs("pause: warning: not running as PID 1\n", stderr);
    if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 ||
        sigaction(SIGCHLD, &child, NULL) < 0) {
        perror("pause: sigaction");
        return 1;
    }
    for (;;)
        pause();
}
