"""The id mappings of `userns`: keep-id's layout, what newuidmap would grant, root mode.

Pure: nothing here maps a namespace or reads /etc/subuid.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdpod.config.model import Container, IdMap, LayoutImage, UserNamespace, UsernsMode
from sdpod.errors import RuntimeSetupError
from sdpod.kernel.userns import (
    Grants,
    IdMapping,
    IdRange,
    host_id,
    keep_id_mapping,
    keep_id_ranges,
    ungranted,
)
from sdpod.runtime import idmaps
from sdpod.runtime.idpool import BASE, IdPool

GRANTS = Grants("alice", 1000, 1001, ((100000, 65536),), ((200000, 65536),))


def container(userns: UserNamespace, user: str | None = None) -> Container:
    return Container("web", LayoutImage(Path("/nonexistent"), "latest"), user=user, userns=userns)


def explicit(uids: list[str], gids: list[str] | None = None) -> UserNamespace:
    def maps(texts: list[str]) -> tuple[IdMap, ...]:
        return tuple(IdMap(*(int(part) for part in text.split(":"))) for text in texts)

    return UserNamespace(UsernsMode.MAP, maps(uids), maps(gids or uids))


# -- keep-id --------------------------------------------------------------------------------


def test_keep_id_keeps_the_own_id_and_fills_the_rest_with_subordinate_ids() -> None:
    assert keep_id_ranges(1000, [(100000, 65536)]) == (
        IdRange(0, 100000, 1000),
        IdRange(1000, 1000, 1),
        IdRange(1001, 101000, 64536),
    )


def test_keep_id_with_an_own_id_above_the_subordinate_count_maps_it_apart() -> None:
    assert keep_id_ranges(70000, [(100000, 65536)]) == (
        IdRange(0, 100000, 65536),
        IdRange(70000, 70000, 1),
    )


def test_keep_id_runs_through_several_grants_in_order() -> None:
    assert keep_id_ranges(5, [(100000, 3), (200000, 10)]) == (
        IdRange(0, 100000, 3),
        IdRange(3, 200000, 2),
        IdRange(5, 5, 1),
        IdRange(6, 200002, 8),
    )


def test_keep_id_maps_each_subordinate_id_once_and_every_container_id_once() -> None:
    ranges = keep_id_ranges(1000, [(100000, 65536), (300000, 10)])
    inside = [i for r in ranges for i in range(r.container_id, r.container_id + r.size)]
    outside = [i for r in ranges for i in range(r.host_id, r.host_id + r.size)]
    assert sorted(inside) == list(range(65547))
    assert len(set(outside)) == len(outside) == 65547
    assert host_id(ranges, 1000) == 1000
    assert host_id(ranges, 0) == 100000
    assert host_id(ranges, 1001) == 101000


def test_keep_id_mapping_uses_the_uid_for_users_and_the_gid_for_groups() -> None:
    mapping = keep_id_mapping(GRANTS)
    assert host_id(mapping.uids, 1000) == 1000
    assert host_id(mapping.gids, 1001) == 1001
    assert mapping.host_root == (100000, 200000)


# -- what newuidmap grants ------------------------------------------------------------------


@pytest.mark.parametrize(
    "ranges",
    [
        [IdRange(0, 1000, 1)],
        [IdRange(0, 100000, 65536)],
        [IdRange(5, 1000, 1), IdRange(0, 100010, 5)],
        [IdRange(0, 100000, 20)],  # through two grants that adjoin
    ],
)
def test_granted_ranges_pass(ranges: list[IdRange]) -> None:
    assert ungranted(ranges, 1000, [(100000, 10), (100010, 65526)]) is None


@pytest.mark.parametrize(
    ("ranges", "refused"),
    [
        ([IdRange(0, 100000, 65537)], IdRange(0, 100000, 65537)),  # one past the end
        ([IdRange(0, 999, 2)], IdRange(0, 999, 2)),  # the own id, but not alone
        ([IdRange(0, 1000, 1), IdRange(1, 50000, 3)], IdRange(1, 50000, 3)),
    ],
)
def test_ungranted_ranges_are_named(ranges: list[IdRange], refused: IdRange) -> None:
    assert ungranted(ranges, 1000, [(100000, 65536)]) == refused


def test_a_map_outside_the_grants_is_refused_naming_entry_user_and_ranges() -> None:
    mapping = idmaps.explicit_mapping(*_maps(explicit(["0:100000:1000", "1000:50000:1"])))
    with pytest.raises(RuntimeSetupError) as raised:
        idmaps.check_granted("web", mapping, GRANTS)
    message = str(raised.value)
    assert 'userns.uid_map entry "1000:50000:1"' in message
    assert "user alice may not map" in message
    assert "their own uid 1000 and the /etc/subuid ranges 100000-165535" in message


def test_a_map_without_the_own_id_is_refused() -> None:
    mapping = idmaps.explicit_mapping(*_maps(explicit(["0:100000:65536"])))
    with pytest.raises(RuntimeSetupError, match="does not map your own uid 1000"):
        idmaps.check_granted("web", mapping, GRANTS)


def test_a_map_within_the_grants_passes() -> None:
    userns = explicit(["0:100000:1000", "1000:1000:1"], ["0:200000:1001", "1001:1001:1"])
    idmaps.check_granted("web", idmaps.explicit_mapping(*_maps(userns)), GRANTS)


def _maps(userns: UserNamespace) -> tuple[tuple[IdMap, ...], tuple[IdMap, ...]]:
    return userns.uid_map, userns.gid_map


# -- fingerprints, users, root mode -----------------------------------------------------


def test_the_fingerprint_names_the_ranges_not_their_order() -> None:
    one = IdMapping((IdRange(0, 1, 1), IdRange(1, 5, 2)), (IdRange(0, 1, 1),))
    same = IdMapping((IdRange(1, 5, 2), IdRange(0, 1, 1)), (IdRange(0, 1, 1),))
    other = IdMapping((IdRange(0, 1, 1), IdRange(1, 5, 3)), (IdRange(0, 1, 1),))
    swapped = IdMapping((IdRange(0, 1, 1),), (IdRange(0, 1, 1), IdRange(1, 5, 2)))
    assert one.fingerprint == same.fingerprint
    assert len({one.fingerprint, other.fingerprint, swapped.fingerprint}) == 3


def test_keep_id_runs_as_the_caller_unless_user_is_set() -> None:
    import os

    keep = UserNamespace(UsernsMode.KEEP_ID)
    assert idmaps.with_default_user(container(keep)).user == f"{os.getuid()}:{os.getgid()}"
    assert idmaps.with_default_user(container(keep, user="www")).user == "www"
    assert idmaps.with_default_user(container(UserNamespace())).user is None


def test_root_refuses_keep_id(tmp_path: Path) -> None:
    keep = container(UserNamespace(UsernsMode.KEEP_ID))
    with pytest.raises(RuntimeSetupError, match="would give the container the host's root"):
        idmaps.mapping_for(keep, None, IdPool(tmp_path))
    assert not (tmp_path / "idranges.json").exists()


def test_root_takes_explicit_maps_as_written_but_clear_of_its_pool(tmp_path: Path) -> None:
    mapping = idmaps.mapping_for(container(explicit(["0:500000:65536"])), None, IdPool(tmp_path))
    assert mapping.uids == (IdRange(0, 500000, 65536),)
    assert not (tmp_path / "idranges.json").exists()

    clash = container(explicit(["0:500000:10", f"10:{BASE + 5}:10"]))
    with pytest.raises(RuntimeSetupError, match=f'entry "10:{BASE + 5}:10"'):
        idmaps.mapping_for(clash, None, IdPool(tmp_path))


def test_rootless_auto_is_the_default_mapping(tmp_path: Path) -> None:
    default = IdMapping((IdRange(0, 1000, 1),), (IdRange(0, 1000, 1),))
    assert idmaps.mapping_for(container(UserNamespace()), default, IdPool(tmp_path)) is default
