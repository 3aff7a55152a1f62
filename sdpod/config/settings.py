"""The setting tables: every TOML key, its conversion, default, normalised output and help.

Adding a setting means adding a row here (and a field to the model class the table
fills): the loader, the unknown-key suggestions, `dump` and the reference in
docs/settings.md all read it here. `SETTINGS` is a container's table; `RESOURCES` and
`HEALTH` are the tables nested in it; `PROJECT` is the optional `[project]` table.
"""

from __future__ import annotations

import shlex
from typing import Any, Final

from sdpod.config import convert, mounts, quantities, values
from sdpod.config import settings_isolation as isolation
from sdpod.config import settings_mounts as mounted
from sdpod.config.model import (
    Dependency,
    DependencyCondition,
    Device,
    EnvFile,
    HealthCheck,
    Image,
    LayoutImage,
    Network,
    PortMapping,
    PortProxy,
    PullPolicy,
    ReadyWhen,
    Resources,
    RestartPolicy,
    Secret,
    Tmpfs,
    UnhealthyAction,
    UserNamespace,
    Volume,
)
from sdpod.config.problems import Invalid, Spot
from sdpod.config.schema import REQUIRED, Json, Setting, ShowPath, convert_table
from sdpod.kernel.capability_names import DEFAULT as DEFAULT_CAPABILITIES

# -- the container's own keys ---------------------------------------------------------------


def _convert_name(value: object, spot: Spot) -> str | None:
    return convert.one(value, spot, '"web"', lambda text, _: values.parse_name(text))


def _parse_image(text: str, spot: Spot) -> Image:
    short_names = spot.findings.short_names
    return values.parse_image(text, spot.base_dir, spot.check_paths, short_names)


def _convert_image(value: object, spot: Spot) -> Image | None:
    return convert.one(value, spot, '"docker.io/library/nginx:1.27"', _parse_image)


def _convert_command(value: object, spot: Spot) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return convert.one(value, spot, '"httpd -f"', _split_command)
    return _command_words(value, spot, '["httpd", "-f"]', '"httpd"')


def _command_words(value: object, spot: Spot, like: str, like_word: str) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        spot.wrong_type(f"a list of strings like {like}, or one string", value)
        return None
    words = convert.each(value, spot, like_word, _command_word)
    if words == ():
        spot.fail("the command is empty; valid: at least one word, the program to run")
        return None
    return words


def _command_word(word: str, _: Spot) -> str:
    # execve(2) takes NUL-terminated strings: a NUL would silently cut the word short.
    if "\0" in word:
        raise Invalid("the command contains a NUL character; valid: text without NUL")
    return word


def _split_command(text: str, spot: Spot) -> tuple[str, ...]:
    _command_word(text, spot)
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise Invalid(f"cannot split the command into words: {str(error).lower()}") from None
    if not words:
        raise Invalid("the command is empty; valid: at least one word, the program to run")
    return tuple(words)


# Linux refuses to exec with one environment string of 128 KiB or more (MAX_ARG_STRLEN),
# or with arguments and environment over a quarter of the stack limit, 2 MiB by default:
# found here, the error names the key; found at start, it names nothing.
ENV_ENTRY_MAX = 131072
ENV_TOTAL_MAX = 1 << 20


def _convert_env(value: object, spot: Spot) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(value, dict):
        spot.wrong_type('a table of strings like { GREETING = "hello" }', value)
        return None
    pairs: list[tuple[str, str]] = []
    for name, text in value.items():
        at = spot.child(name)
        if not name or "=" in name or "\0" in name:
            at.fail("invalid variable name; valid: a name without '=' and NUL, like GREETING")
        elif not isinstance(text, str):
            at.wrong_type('a string like "hello"', text)
        elif "\0" in text:
            at.fail("the value contains a NUL character; valid: text without NUL", text)
        elif len(f"{name}={text}".encode()) >= ENV_ENTRY_MAX:
            at.fail(f"the variable is too long for exec(2); valid: under {ENV_ENTRY_MAX} bytes")
        else:
            pairs.append((name, text))
    if sum(len(f"{n}={t}".encode()) + 1 for n, t in pairs) > ENV_TOTAL_MAX:
        spot.fail(
            f"the variables add up to more than exec(2) takes; valid: {ENV_TOTAL_MAX} "
            "bytes in all, with room left for the command"
        )
        return None
    return tuple(pairs) if len(pairs) == len(value) else None


def _convert_depends_on(value: object, spot: Spot) -> tuple[Dependency, ...] | None:
    if isinstance(value, dict):
        return _dependency_table(value, spot)
    if not isinstance(value, list):
        spot.wrong_type('a list of names like ["db"], or a table like { db = "healthy" }', value)
        return None
    names = convert.each(value, spot, '"db"', lambda text, _: values.parse_name(text))
    return None if names is None else tuple(Dependency(name) for name in names)


def _dependency_table(table: dict[str, Any], spot: Spot) -> tuple[Dependency, ...] | None:
    """`{ db = "healthy", cache = "started" }`: the condition of each dependency."""
    found: list[Dependency] = []
    for name, condition in table.items():
        at = spot.child(name)
        try:
            values.parse_name(name)
        except Invalid as error:
            at.refuse(error, name)
            continue
        chosen = convert.choice(
            condition, at, DependencyCondition, "condition", DependencyCondition.HEALTHY
        )
        if chosen is not None:
            found.append(Dependency(name, chosen))
    return tuple(found) if len(found) == len(table) else None


def _convert_documentation(value: object, spot: Spot) -> tuple[str, ...] | None:
    return convert.each(
        value, spot, '"https://example.org/"', lambda text, _: values.parse_documentation_url(text)
    )


def _dump_image(image: Image, show: ShowPath) -> Json:
    if isinstance(image, LayoutImage):
        return {"path": show(image.path), "tag": image.tag}
    return {"reference": image.reference}


def _dump_dependency(dependency: Dependency) -> Json:
    return {"name": dependency.name, "condition": dependency.condition.value}


def dump_table(rows: tuple[Setting[Any], ...], model: object, show: ShowPath) -> dict[str, Json]:
    """A model object filled through `rows`, rendered by their keys."""
    return {row.key: row.dump(getattr(model, row.attribute), show) for row in rows}


def _dump_duration(seconds: float, _: ShowPath) -> Json:
    return quantities.format_duration(seconds)


def _dump_optional(value: int | float | None, _: ShowPath) -> Json:
    return value


# -- [container.resources] --------------------------------------------------------------

# The kernel's smallest CPU quota is 1 ms per 100 ms period (sched-bwc.rst), 1% of a CPU;
# the largest is bounded by Linux's most CPUs, NR_CPUS=8192.
_CPUS_MIN, _CPUS_MAX = 0.01, 8192.0
# cgroup v2's cpu.weight and io.weight both range from 1 to 10000 (cgroup-v2.rst).
_WEIGHT_MAX = 10_000
# No more tasks than the kernel's most process ids, PID_MAX_LIMIT on 64-bit systems.
_PIDS_MAX = 4 * 1024 * 1024

RESOURCES: Final[tuple[Setting[Any], ...]] = (
    Setting[int | None](
        key="memory",
        field="memory_max",
        convert=convert.size,
        default=None,
        dump=_dump_optional,
        example='memory = "512M"',
        help="the most memory the container may use; beyond it the kernel reclaims and then "
        "kills (systemd's MemoryMax=)",
    ),
    Setting[int | None](
        key="memory_high",
        convert=convert.size,
        default=None,
        dump=_dump_optional,
        example='memory_high = "400M"',
        help="above this much memory the container is throttled and reclaimed hard, "
        "not killed (MemoryHigh=)",
    ),
    Setting[float | None](
        key="cpus",
        convert=lambda value, spot: convert.number(value, spot, _CPUS_MIN, _CPUS_MAX),
        default=None,
        dump=_dump_optional,
        example="cpus = 1.5",
        help="CPU time as a number of CPUs, at least 0.01: 1.5 is one and a half CPUs "
        "(CPUQuota=150%)",
    ),
    Setting[int | None](
        key="cpu_weight",
        convert=lambda value, spot: convert.integer(value, spot, 1, _WEIGHT_MAX),
        default=None,
        dump=_dump_optional,
        example="cpu_weight = 200",
        help="the share of CPU time under contention, 1 to 10000; systemd's default is 100 "
        "(CPUWeight=)",
    ),
    Setting[int | None](
        key="pids",
        field="pids_max",
        convert=lambda value, spot: convert.integer(value, spot, 1, _PIDS_MAX),
        default=None,
        dump=_dump_optional,
        example="pids = 256",
        help="the most processes and threads the container may have (TasksMax=)",
    ),
    Setting[int | None](
        key="io_weight",
        convert=lambda value, spot: convert.integer(value, spot, 1, _WEIGHT_MAX),
        default=None,
        dump=_dump_optional,
        example="io_weight = 50",
        help="the share of block I/O under contention, 1 to 10000; systemd's default is 100 "
        "(IOWeight=)",
    ),
)


def _convert_resources(value: object, spot: Spot) -> Resources | None:
    fields = convert_table(value, spot, RESOURCES, '{ memory = "512M", cpus = 1.5 }')
    return None if fields is None else Resources(**fields)


# -- [container.health] ---------------------------------------------------------------------

_RETRIES_MAX = 100


def _convert_check_command(value: object, spot: Spot) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return convert.one(value, spot, '"wget -q -O- http://127.0.0.1/"', _shell_command)
    return _command_words(value, spot, '["pg_isready", "-q"]', '"pg_isready"')


def _shell_command(text: str, spot: Spot) -> tuple[str, ...]:
    # As in docker's HEALTHCHECK CMD-SHELL: a string runs through the image's shell, so
    # that `||`, pipes and variables work in it.
    _command_word(text, spot)
    if not text.strip():
        raise Invalid("the command is empty; valid: at least one word, the program to run")
    return ("/bin/sh", "-c", text)


HEALTH: Final[tuple[Setting[Any], ...]] = (
    Setting[tuple[str, ...]](
        key="command",
        convert=_convert_check_command,
        default=REQUIRED,
        dump=lambda command, _: list(command),
        example='command = ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]',
        help="the check, run inside the container: passing means exit status 0; a list of "
        "words, or one string run by /bin/sh -c (the image needs a shell for that)",
    ),
    Setting[float](
        key="interval",
        convert=lambda value, spot: convert.duration(value, spot, allow_zero=False),
        default=30.0,
        dump=_dump_duration,
        example='interval = "10s"',
        help="the time between two checks",
    ),
    Setting[float](
        key="timeout",
        convert=lambda value, spot: convert.duration(value, spot, allow_zero=False),
        default=5.0,
        dump=_dump_duration,
        example='timeout = "2s"',
        help="a check still running after this long has failed",
    ),
    Setting[int](
        key="retries",
        convert=lambda value, spot: convert.integer(value, spot, 1, _RETRIES_MAX),
        default=3,
        dump=lambda retries, _: retries,
        example="retries = 5",
        help="after this many failed checks in a row the container is unhealthy, 1 to 100",
    ),
    Setting[float](
        key="start_period",
        convert=lambda value, spot: convert.duration(value, spot, allow_zero=True),
        default=0.0,
        dump=_dump_duration,
        example='start_period = "1m"',
        help="failed checks in this long after a start do not count",
    ),
    Setting[UnhealthyAction](
        key="on_unhealthy",
        convert=lambda value, spot: convert.choice(
            value, spot, UnhealthyAction, "action", UnhealthyAction.RESTART
        ),
        default=UnhealthyAction.RESTART,
        dump=lambda action, _: action.value,
        example='on_unhealthy = "restart"',
        help='what happens to an unhealthy container: "restart" (systemd restarts it), '
        '"stop", or "none" (only its status says so)',
    ),
)


def _convert_health(value: object, spot: Spot) -> HealthCheck | None:
    fields = convert_table(value, spot, HEALTH, '{ command = "pg_isready" }')
    return None if fields is None else HealthCheck(**fields)


# -- the container's table --------------------------------------------------------------

SETTINGS: Final[tuple[Setting[Any], ...]] = (
    Setting[str](
        key="name",
        convert=_convert_name,
        default=REQUIRED,
        dump=lambda name, _: name,
        example='name = "web"',
        help="the container's name, also in its unit's name sdpod-NAME.service: "
        f"{values.NAME_RULE}",
        shown_default="required; in [containers.NAME], NAME",
    ),
    Setting[Image](
        key="image",
        convert=_convert_image,
        default=REQUIRED,
        dump=_dump_image,
        example='image = "docker.io/library/nginx:1.27"',
        help="the image: a registry's fully qualified REGISTRY/REPOSITORY[:TAG][@DIGEST] "
        "(a short name only where registries.conf has an alias for it), or an OCI image "
        "layout, oci:PATH[:TAG]; TAG defaults to latest",
    ),
    Setting[PullPolicy](
        key="pull",
        convert=lambda value, spot: convert.choice(
            value, spot, PullPolicy, "pull policy", PullPolicy.ALWAYS
        ),
        default=PullPolicy.MISSING,
        dump=lambda policy, _: policy.value,
        example='pull = "always"',
        help="when `sdpod up` pulls a registry's image: "
        '"missing", when none is stored under its reference; "always", each time (only '
        'layers that changed are fetched); "never", then a missing image is an error',
    ),
    Setting[bool](
        key="tls_verify",
        convert=convert.flag,
        default=True,
        dump=lambda flag, _: flag,
        example="tls_verify = false",
        help="false lets a registry's image come over plain HTTP, or HTTPS with a "
        "certificate that is not verified: for a registry of your own on your LAN",
    ),
    Setting[tuple[str, ...] | None](
        key="command",
        convert=_convert_command,
        default=None,
        dump=lambda command, _: None if command is None else list(command),
        example='command = ["httpd", "-f", "-p", "80"]',
        help="the command to run, a list of words or one string split like a shell does",
        shown_default="the image's",
    ),
    Setting[tuple[str, ...] | None](
        key="entrypoint",
        convert=_convert_command,
        default=None,
        dump=lambda words, _: None if words is None else list(words),
        example='entrypoint = ["/usr/bin/tini", "--"]',
        help="replaces the image's entrypoint, the words before the command; as with "
        "docker, setting it also drops the image's command",
        shown_default="the image's",
    ),
    Setting[str | None](
        key="working_dir",
        convert=lambda value, spot: convert.one(
            value, spot, '"/srv"', lambda text, _: values.parse_absolute_path(text)
        ),
        default=None,
        dump=lambda path, _: path,
        example='working_dir = "/srv"',
        help="the directory the command starts in, an absolute path in the container",
        shown_default="the image's",
    ),
    Setting[str | None](
        key="user",
        convert=lambda value, spot: convert.one(
            value, spot, '"www"', lambda text, _: values.parse_user(text)
        ),
        default=None,
        dump=lambda user, _: user,
        example='user = "www:www"',
        help="the user (and group) the command runs as: NAME, UID, NAME:GROUP or UID:GID, "
        "names from the image's /etc/passwd and /etc/group",
        shown_default="the image's",
    ),
    Setting[tuple[tuple[str, str], ...]](
        key="env",
        convert=_convert_env,
        default=(),
        dump=lambda env, _: dict(env),
        example='env = { GREETING = "hello" }',
        help="environment variables, a table of strings; they win over env_file's",
    ),
    Setting[tuple[EnvFile, ...]](
        key="env_file",
        field="env_files",
        convert=isolation.convert_env_files,
        default=(),
        dump=isolation.dump_env_files,
        example='env_file = ["web.env"]',
        help="files of KEY=VALUE lines (# comments, blank lines and quoted values allowed), "
        "a path or a list, relative to the TOML file; a later file wins over an earlier one",
    ),
    Setting[tuple[PortMapping, ...]](
        key="ports",
        convert=mounted.convert_ports,
        default=(),
        dump=lambda ports, _: [mounted.dump_port(port) for port in ports],
        example='ports = ["127.0.0.1:8080:80", "8081:81/udp", "9000-9001:9000-9001"]',
        help="published ports: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp], either port "
        "a range like 9000-9009, HOST_IP 0.0.0.0 unless given, an IPv6 one in brackets "
        '("[::1]:8080:80"; UDP on IPv6 through pasta only); or tables: see below. TCP '
        'ports on slirp4netns and "none" are published by systemd\'s socket activation, '
        "and the container sees their clients as 127.0.0.1",
        table=mounted.PORT,
        table_items=True,
    ),
    Setting[PortProxy](
        key="port_proxy",
        convert=lambda value, spot: convert.choice(
            value, spot, PortProxy, "port proxy", PortProxy.HELPER
        ),
        default=PortProxy.SYSTEMD,
        dump=lambda proxy, _: proxy.value,
        example='port_proxy = "helper"',
        help='what forwards the published TCP ports on slirp4netns and "none": '
        '"systemd", a socket unit per container port, listening in your manager, and '
        "systemd-socket-proxyd in the container's network from the first connection until "
        "an idle minute (the container sees clients as 127.0.0.1, and a client that "
        'half-closes its side gets no reply; 2048 connections at once per port); "helper", '
        "slirp4netns's own forwarder, always running, slower, which keeps half-closed "
        "connections (clients seen as 10.0.2.2) but accepts them one at a time: many at "
        "once wait about a second each. pasta forwards its own ports either way",
    ),
    Setting[tuple[Volume, ...]](
        key="volumes",
        convert=mounted.convert_volumes,
        default=(),
        dump=lambda volumes, show: [mounted.dump_volume(volume, show) for volume in volumes],
        example='volumes = ["./www:/www:ro", "pgdata:/var/lib/postgresql/data"]',
        help="SOURCE:TARGET[:OPTIONS]: SOURCE a host path (with a '/', or starting with '.' "
        "or '~'; relative to the TOML file) or the name of a volume sdpod keeps, which "
        "takes the image's files at TARGET while it is empty and outlives the container; "
        f"OPTIONS {mounts.VOLUME_OPTIONS}; or tables: see below",
        table=mounted.VOLUME,
        table_items=True,
    ),
    Setting[tuple[Tmpfs, ...]](
        key="tmpfs",
        convert=mounted.convert_tmpfs,
        default=(),
        dump=lambda tmpfs, _: [mounted.dump_tmpfs(one) for one in tmpfs],
        example='tmpfs = ["/run", "/cache:size=64M,mode=0700"]',
        help=f"empty memory-backed file systems, made afresh at each start: {mounts.TMPFS_SYNTAX}",
    ),
    Setting[tuple[Secret, ...]](
        key="secrets",
        convert=mounted.convert_secrets,
        default=(),
        dump=lambda secrets, show: [mounted.dump_secret(one, show) for one in secrets],
        example='secrets = ["./db-password"]',
        help="host files copied into memory at each start, as read-only files of "
        "/run/secrets named as their source, owned by root with mode 0400: paths, or tables "
        "to choose the name, mode and owner: see below",
        table=mounted.SECRET,
        table_items=True,
    ),
    Setting[tuple[Device, ...]](
        key="devices",
        convert=mounted.convert_devices,
        default=(),
        dump=lambda devices, _: [mounted.dump_device(one) for one in devices],
        example='devices = ["/dev/dri/renderD128"]',
        help=f"host devices the container may use: {mounts.DEVICE_SYNTAX}; PERMISSIONS as "
        "docker writes them (r, rw, rwm; rw by default), where a missing w mounts the node "
        "read-only, which does not stop writes to the device itself: rootless there is no "
        "device cgroup, and the node's own permissions decide. Your user must be allowed "
        "to open the device",
    ),
    Setting[str | None](
        key="hostname",
        convert=lambda value, spot: convert.one(
            value, spot, '"web"', lambda text, _: values.parse_hostname(text)
        ),
        default=None,
        dump=lambda name, _: name,
        example='hostname = "web.home.arpa"',
        help="the container's host name",
        shown_default="the container's name",
    ),
    Setting[bool](
        key="read_only",
        convert=convert.flag,
        default=False,
        dump=lambda flag, _: flag,
        example="read_only = true",
        help="mount the image's files read-only; /tmp, /var/tmp and /run get empty tmpfs "
        "file systems, volumes keep their own mode",
    ),
    Setting[tuple[tuple[str, str], ...]](
        key="labels",
        convert=isolation.convert_labels,
        default=(),
        dump=isolation.dump_pairs,
        example='labels = { "org.example.team" = "web" }',
        help="names and values for your own use, kept as annotations of the container",
    ),
    Setting[tuple[str, ...]](
        key="cap_add",
        convert=isolation.convert_capabilities,
        default=(),
        dump=lambda names, _: list(names),
        example='cap_add = ["NET_ADMIN"]',
        help="capabilities the container's root gets beyond the default set "
        f"({', '.join(name.removeprefix('CAP_') for name in DEFAULT_CAPABILITIES)}); "
        "users other than root get none",
    ),
    Setting[tuple[str, ...]](
        key="cap_drop",
        convert=isolation.convert_capabilities,
        default=(),
        dump=lambda names, _: list(names),
        example='cap_drop = ["ALL"]',
        help='capabilities taken from the default set; "ALL" takes every one, and cap_add '
        "then gives back what it names",
    ),
    Setting[tuple[tuple[str, str], ...]](
        key="sysctls",
        convert=isolation.convert_sysctls,
        default=(),
        dump=isolation.dump_pairs,
        example='sysctls = { "net.ipv4.ip_unprivileged_port_start" = 80 }',
        help="kernel settings the container keeps for itself: net.*, fs.mqueue.*, "
        "kernel.shm*, kernel.msg* and kernel.sem",
    ),
    Setting[UserNamespace](
        key="userns",
        convert=isolation.convert_userns,
        default=UserNamespace(),
        dump=isolation.dump_userns,
        example='userns = "keep-id"',
        help='how ids inside map to the host: "auto", root is you and other ids your '
        'subordinate ids; "keep-id", your own id is the same inside, root a subordinate id, '
        "and the container runs as you unless `user` says otherwise (not as root); or a "
        "table of maps: see below",
        table=isolation.USERNS,
    ),
    Setting[Network](
        key="network",
        convert=isolation.convert_network,
        default=Network(),
        dump=isolation.dump_network,
        example='network = "container:db"',
        help='"private", a network of the file\'s own, reaching out through the default '
        "user-mode backend: pasta where its build is 2023-12-04 or newer, slirp4netns "
        "otherwise; where two or more containers of the file have it, they share it, "
        "pod-style, and reach each other by name (each listening on ports of its own); "
        '"pasta" or "slirp4netns", a network of the container\'s own through that backend '
        '(an older pasta with a warning); "none", '
        "loopback alone, with TCP ports still published by systemd; "
        '"host", the host\'s network, with copies of its /etc/hosts and resolv.conf; '
        '"container:NAME", the network and name resolution of another '
        "container of the file, which then starts first",
    ),
    Setting[tuple[str, ...]](
        key="dns",
        convert=isolation.convert_dns,
        default=(),
        dump=lambda servers, _: list(servers),
        example='dns = ["192.168.1.1"]',
        help="name servers for /etc/resolv.conf, at most 3",
        shown_default="the user-mode stack's forwarder to the host's; the host's on "
        '"host"; none on "none"',
    ),
    Setting[tuple[str, ...]](
        key="dns_search",
        convert=isolation.convert_dns_search,
        default=(),
        dump=lambda domains, _: list(domains),
        example='dns_search = ["home.arpa"]',
        help="search domains for /etc/resolv.conf, at most 6",
    ),
    Setting[tuple[str, ...]](
        key="dns_options",
        convert=isolation.convert_dns_options,
        default=(),
        dump=lambda options, _: list(options),
        example='dns_options = ["ndots:2"]',
        help="resolver options for /etc/resolv.conf",
    ),
    Setting[tuple[tuple[str, str], ...]](
        key="extra_hosts",
        convert=isolation.convert_extra_hosts,
        default=(),
        dump=isolation.dump_extra_hosts,
        example='extra_hosts = { "nas.home.arpa" = "192.168.1.10" }',
        help='more lines of /etc/hosts: a table of names to addresses, or "NAME:ADDRESS" strings',
    ),
    Setting[RestartPolicy](
        key="restart",
        convert=lambda value, spot: convert.choice(
            value, spot, RestartPolicy, "restart policy", RestartPolicy.ON_FAILURE
        ),
        default=RestartPolicy.ON_FAILURE,
        dump=lambda policy, _: policy.value,
        example='restart = "always"',
        help=f"when systemd restarts the container: {convert.choices(RestartPolicy)}",
    ),
    Setting[float](
        key="restart_delay",
        convert=lambda value, spot: convert.duration(value, spot, allow_zero=True),
        default=1.0,
        dump=_dump_duration,
        example='restart_delay = "5s"',
        help="the pause before systemd restarts the container (RestartSec=)",
    ),
    Setting[int](
        key="stop_signal",
        convert=convert.signal,
        default=15,
        dump=lambda number, _: quantities.signal_name(number),
        example='stop_signal = "SIGQUIT"',
        help="the signal that asks the container to stop, sent to its init, which passes it "
        "on to the command (KillSignal=)",
    ),
    Setting[float](
        key="stop_timeout",
        convert=lambda value, spot: convert.duration(value, spot, allow_zero=False),
        default=10.0,
        dump=_dump_duration,
        example='stop_timeout = "30s"',
        help="how long the container may take to stop before it is killed (TimeoutStopSec=)",
    ),
    Setting[Resources](
        key="resources",
        convert=_convert_resources,
        default=Resources(),
        dump=lambda resources, show: dump_table(RESOURCES, resources, show),
        example='resources = { memory = "512M", cpus = 1.5 }',
        help="limits of the container's cgroup, a table: see below",
        table=RESOURCES,
        shown_default="no limits",
    ),
    Setting[HealthCheck | None](
        key="health",
        convert=_convert_health,
        default=None,
        dump=lambda health, show: None if health is None else dump_table(HEALTH, health, show),
        example='health = { command = "pg_isready", interval = "10s" }',
        help="a health check, a table: see below",
        table=HEALTH,
        shown_default="no health check",
    ),
    Setting[ReadyWhen](
        key="ready",
        convert=lambda value, spot: convert.choice(
            value, spot, ReadyWhen, "readiness", ReadyWhen.HEALTHY
        ),
        default=ReadyWhen.STARTED,
        dump=lambda ready, _: ready.value,
        example='ready = "healthy"',
        help='when the container counts as started, and `sdpod up` returns: "started", once '
        'its command runs; "notify", once it sends READY=1 to $NOTIFY_SOCKET itself; '
        '"healthy", once its health check first passes (it needs a health table)',
    ),
    Setting[tuple[Dependency, ...]](
        key="depends_on",
        convert=_convert_depends_on,
        default=(),
        dump=lambda dependencies, _: [_dump_dependency(one) for one in dependencies],
        example='depends_on = { db = "healthy" }',
        help="containers of this file that must be started before this one: a list of names, "
        'or a table of names to "started" (ready as their own `ready` says) or "healthy" '
        "(their health check passes); stopping or restarting one stops or restarts this one",
    ),
    Setting[str | None](
        key="description",
        convert=lambda value, spot: convert.text_line(value, spot, '"The shop\'s database"'),
        default=None,
        dump=lambda description, _: description,
        example='description = "The shop\'s database"',
        help="the unit's description, one line that `systemctl --user status` shows",
        shown_default='"sdpod container NAME (IMAGE)"',
    ),
    Setting[tuple[str, ...]](
        key="documentation",
        convert=_convert_documentation,
        default=(),
        dump=lambda urls, _: list(urls),
        example='documentation = ["https://example.org/docs", "man:httpd(8)"]',
        help="where the container is documented, as systemd accepts it: "
        f"{values.DOCUMENTATION_SCHEMES} URLs",
    ),
)


# -- [project] ----------------------------------------------------------------------------


def _convert_project_name(value: object, spot: Spot) -> str | None:
    return convert.one(value, spot, '"shop"', lambda text, _: values.parse_name(text, "project"))


PROJECT: Final[tuple[Setting[Any], ...]] = (
    Setting[str | None](
        key="name",
        convert=_convert_project_name,
        default=None,
        dump=lambda name, _: name,
        example='name = "shop"',
        help="the project's name: its containers share the slice sdpod-NAME.slice; "
        f"{values.NAME_RULE}",
        shown_default="the TOML file's name without .toml",
    ),
)
