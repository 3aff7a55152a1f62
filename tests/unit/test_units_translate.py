"""Translation of a container into its unit's properties: pure."""

from __future__ import annotations

from pathlib import Path

from sdpod.config.model import Container, LayoutImage, RestartPolicy
from sdpod.units.translate import service_properties


def test_properties_of_a_restarting_container() -> None:
    container = Container("web", LayoutImage(Path("/img"), "v1"), restart=RestartPolicy.ALWAYS)
    properties = dict(service_properties(container, ["/py", "-m", "sdpod.runtime", "launch", "/b"]))

    assert properties["ExecStart"] == (
        "a(sasb)",
        [("/py", ["/py", "-m", "sdpod.runtime", "launch", "/b"], False)],
    )
    assert properties["Type"] == ("s", "notify")
    assert properties["Delegate"] == ("b", True)
    assert properties["Restart"] == ("s", "always")
    assert properties["KillMode"] == ("s", "mixed")
    assert properties["Description"] == ("s", "sdpod container web (oci:/img:v1)")


def test_every_policy_has_a_systemd_word() -> None:
    for policy in RestartPolicy:
        container = Container("x", LayoutImage(Path("/i"), "t"), restart=policy)
        assert dict(service_properties(container, ["/py"]))["Restart"] == ("s", policy.value)
