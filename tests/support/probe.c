/*
 * probe: what a container's process sees, one `key=value` line each, sorted by nothing
 * but the order below. Built statically by tests/support/probe.py, so that it runs in
 * any image; it reads only the kernel's own interfaces and runs no other program (a
 * second exec would change the capability sets it reports).
 *
 *     probe [FILE...]     also prints file.FILE=<its first line> for each FILE
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <unistd.h>

extern char **environ;

static const struct {
    const char *name;
    int resource;
} limits[] = {
    {"AS", RLIMIT_AS},           {"CORE", RLIMIT_CORE},         {"CPU", RLIMIT_CPU},
    {"DATA", RLIMIT_DATA},       {"FSIZE", RLIMIT_FSIZE},       {"LOCKS", RLIMIT_LOCKS},
    {"MEMLOCK", RLIMIT_MEMLOCK}, {"MSGQUEUE", RLIMIT_MSGQUEUE}, {"NICE", RLIMIT_NICE},
    {"NOFILE", RLIMIT_NOFILE},   {"NPROC", RLIMIT_NPROC},       {"RSS", RLIMIT_RSS},
    {"RTPRIO", RLIMIT_RTPRIO},   {"RTTIME", RLIMIT_RTTIME},     {"SIGPENDING", RLIMIT_SIGPENDING},
    {"STACK", RLIMIT_STACK},
};

static const char *namespaces[] = {"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"};

static void chomp(char *line) {
    size_t length = strlen(line);
    while (length > 0 && (line[length - 1] == '\n' || line[length - 1] == ' ')) {
        line[--length] = '\0';
    }
}

/* The first line of a file, or "error: <reason>". */
static void print_first_line(const char *key, const char *path) {
    char line[4096] = "";
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        printf("%s=error: %s\n", key, strerror(errno));
        return;
    }
    if (fgets(line, sizeof line, file) == NULL) {
        line[0] = '\0';
    }
    fclose(file);
    chomp(line);
    printf("%s=%s\n", key, line);
}

static void print_ids(void) {
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    getresuid(&ruid, &euid, &suid);
    getresgid(&rgid, &egid, &sgid);
    printf("pid=%d\nuid=%u %u %u\ngid=%u %u %u\n", getpid(), ruid, euid, suid, rgid, egid, sgid);

    gid_t groups[NGROUPS_MAX];
    int count = getgroups(NGROUPS_MAX, groups);
    printf("groups=");
    for (int i = 0; i < count; i++) {
        printf(i ? ",%u" : "%u", groups[i]);
    }
    printf("\n");
}

/* Capability sets, seccomp mode and umask, as the kernel reports them for this process. */
static void print_status(void) {
    static const struct {
        const char *field, *key;
    } fields[] = {
        {"CapInh:", "cap.inheritable"}, {"CapPrm:", "cap.permitted"}, {"CapEff:", "cap.effective"},
        {"CapBnd:", "cap.bounding"},    {"CapAmb:", "cap.ambient"},   {"Seccomp:", "seccomp"},
        {"Umask:", "umask"},            {"NoNewPrivs:", "no_new_privs"},
    };
    char line[512];
    FILE *status = fopen("/proc/self/status", "r");
    if (status == NULL) {
        printf("status=error: %s\n", strerror(errno));
        return;
    }
    while (fgets(line, sizeof line, status)) {
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            size_t length = strlen(fields[i].field);
            if (strncmp(line, fields[i].field, length) == 0) {
                char *value = line + length;
                value += strspn(value, " \t");
                chomp(value);
                printf("%s=%s\n", fields[i].key, value);
            }
        }
    }
    fclose(status);
    printf("dumpable=%d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
}

static void print_limit_value(rlim_t value) {
    if (value == RLIM_INFINITY) {
        printf("unlimited");
    } else {
        printf("%llu", (unsigned long long)value);
    }
}

static void print_rlimits(void) {
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        struct rlimit limit;
        getrlimit(limits[i].resource, &limit);
        printf("rlimit.%s=", limits[i].name);
        print_limit_value(limit.rlim_cur);
        printf(" ");
        print_limit_value(limit.rlim_max);
        printf("\n");
    }
}

static void print_names(void) {
    struct utsname names;
    uname(&names);
    printf("hostname=%s\ndomainname=%s\n", names.nodename, names.domainname);
}

/* The propagation of a mount from mountinfo's optional fields, without peer numbers. */
static const char *propagation(const char *optional) {
    int shared = strstr(optional, "shared:") != NULL;
    int slave = strstr(optional, "master:") != NULL;
    if (strstr(optional, "unbindable")) {
        return "unbindable";
    }
    return shared && slave ? "shared,slave" : shared ? "shared" : slave ? "slave" : "private";
}

/* mount.MOUNTPOINT=FSTYPE PER-MOUNT-OPTIONS, propagation.MOUNTPOINT=PROPAGATION and
 * mountdata.MOUNTPOINT=SUPER-OPTIONS; a mount point seen again (mounted over) gets #2... */
static void print_mounts(void) {
    char line[8192], seen[256][512];
    int count = 0;
    FILE *info = fopen("/proc/self/mountinfo", "r");
    if (info == NULL) {
        printf("mounts=error: %s\n", strerror(errno));
        return;
    }
    while (fgets(line, sizeof line, info)) {
        char *separator = strstr(line, " - ");
        if (separator == NULL) {
            continue;
        }
        *separator = '\0';
        char point[512], options[1024], fstype[128], source[1024], data[4096] = "";
        char *optional = NULL;
        if (sscanf(line, "%*s %*s %*s %*s %511s %1023s", point, options) != 2) {
            continue;
        }
        /* The optional fields begin after the sixth field. */
        optional = line;
        for (int field = 0; field < 6 && optional; field++) {
            optional = strchr(optional, ' ');
            if (optional) {
                optional++;
            }
        }
        sscanf(separator + 3, "%127s %1023s %4095s", fstype, source, data);
        int again = 1;
        for (int i = 0; i < count; i++) {
            again += strcmp(seen[i], point) == 0;
        }
        if (count < 256) {
            snprintf(seen[count++], sizeof seen[0], "%s", point);
        }
        char key[600];
        snprintf(key, sizeof key, again > 1 ? "%s#%d" : "%s", point, again);
        printf("mount.%s=%s %s\n", key, fstype, options);
        printf("propagation.%s=%s\n", key, propagation(optional ? optional : ""));
        printf("mountdata.%s=%s\n", key, data);
    }
    fclose(info);
}

static void print_cgroup(void) {
    char line[1024];
    FILE *file = fopen("/proc/self/cgroup", "r");
    if (file == NULL) {
        printf("cgroup=error: %s\n", strerror(errno));
        return;
    }
    while (fgets(line, sizeof line, file)) {
        chomp(line);
        /* "ID:controllers:path": one key per hierarchy, named by its controllers (v2's
         * by "unified"), with '=' (of name=systemd) turned into ':' for the key. */
        char *controllers = strchr(line, ':');
        char *path = controllers ? strchr(controllers + 1, ':') : NULL;
        if (path == NULL) {
            continue;
        }
        *path++ = '\0';
        controllers++;
        for (char *c = controllers; *c; c++) {
            *c = *c == '=' ? ':' : *c;
        }
        printf("cgroup.%s=%s\n", *controllers ? controllers : "unified", path);
    }
    fclose(file);
}

static void print_namespaces(void) {
    for (size_t i = 0; i < sizeof namespaces / sizeof namespaces[0]; i++) {
        char path[64];
        struct stat info;
        snprintf(path, sizeof path, "/proc/self/ns/%s", namespaces[i]);
        if (stat(path, &info) == 0) {
            printf("ns.%s=%lu\n", namespaces[i], (unsigned long)info.st_ino);
        } else {
            printf("ns.%s=error: %s\n", namespaces[i], strerror(errno));
        }
    }
}

static void print_process(void) {
    char cwd[PATH_MAX];
    printf("cwd=%s\n", getcwd(cwd, sizeof cwd) ? cwd : strerror(errno));
    print_first_line("oom_score_adj", "/proc/self/oom_score_adj");
    int probe = open("/", O_RDONLY | O_DIRECTORY);
    printf("root_writable=%s\n", faccessat(probe, ".", W_OK, AT_EACCESS) == 0 ? "yes" : "no");
    close(probe);
    /* Descriptors the runtime left open, besides the standard three. */
    printf("fds=");
    DIR *fds = opendir("/proc/self/fd");
    int first = 1;
    for (struct dirent *entry; fds && (entry = readdir(fds));) {
        int fd = atoi(entry->d_name);
        if (entry->d_name[0] != '.' && fd > 2 && fd != dirfd(fds)) {
            printf(first ? "%d" : ",%d", fd);
            first = 0;
        }
    }
    printf("\n");
    if (fds) {
        closedir(fds);
    }
    for (char **variable = environ; *variable; variable++) {
        printf("env.%s\n", *variable);
    }
}

static void print_devices(void) {
    DIR *dev = opendir("/dev");
    if (dev == NULL) {
        printf("dev=error: %s\n", strerror(errno));
        return;
    }
    for (struct dirent *entry; (entry = readdir(dev));) {
        char path[512], target[512];
        struct stat info;
        if (entry->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof path, "/dev/%s", entry->d_name);
        if (lstat(path, &info) != 0) {
            continue;
        }
        printf("dev.%s=", entry->d_name);
        if (S_ISLNK(info.st_mode)) {
            ssize_t length = readlink(path, target, sizeof target - 1);
            target[length > 0 ? length : 0] = '\0';
            printf("link %s\n", target);
            continue;
        }
        char kind = S_ISCHR(info.st_mode)   ? 'c'
                    : S_ISBLK(info.st_mode) ? 'b'
                    : S_ISFIFO(info.st_mode) ? 'p'
                    : S_ISDIR(info.st_mode) ? 'd'
                                            : 'f';
        printf("%c %04o %u:%u", kind, info.st_mode & 07777, info.st_uid, info.st_gid);
        if (kind == 'c' || kind == 'b') {
            printf(" %u:%u", major(info.st_rdev), minor(info.st_rdev));
        }
        printf("\n");
    }
    closedir(dev);
}

int main(int argc, char **argv) {
    print_ids();
    print_status();
    print_rlimits();
    print_names();
    print_process();
    print_cgroup();
    print_namespaces();
    print_devices();
    print_mounts();
    for (int i = 1; i < argc; i++) {
        char key[600];
        snprintf(key, sizeof key, "file.%s", argv[i]);
        print_first_line(key, argv[i]);
    }
    return 0;
}
