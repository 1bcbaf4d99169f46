"""The service definition shared by every target: validation and routing semantics."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from common.service import PathRefused, default_service, parse_service


def svc(**over) -> dict:
    data = {
        "port": 80,
        "cluster": [{"name": "small", "backends": ["backend1", "backend2"]},
                    {"name": "big", "backends": ["backend3", "backend4"], "policy": "hash"}],
        "rule": [{"path_prefix": "/big/", "cluster": "big"},
                 {"host": "static.example", "path_prefix": "/", "cluster": "small",
                  "offload": False}],
        "default_cluster": "small",
    }
    data.update(over)
    return data


def test_valid_service_routes_by_rule_order():
    s = parse_service(svc())
    assert s.cluster_for("/big/1m.bin").name == "big"
    assert s.cluster_for("/1k.bin").name == "small"
    assert s.route("/x", host="STATIC.example:80").offload is False
    assert s.backends == ["backend1", "backend2", "backend3", "backend4"]


def test_empty_cluster_is_refused():
    with pytest.raises(ConfigError, match=r"clusters\[1\]\.backends"):
        parse_service(svc(cluster=[{"name": "small", "backends": ["backend1"]},
                                   {"name": "big", "backends": []}]))


def test_rule_to_missing_cluster_is_refused():
    with pytest.raises(ConfigError, match=r"rules\[0\]\.cluster: no cluster named 'huge'"):
        parse_service(svc(rule=[{"path_prefix": "/", "cluster": "huge"}]))


def test_duplicate_backends_are_refused():
    with pytest.raises(ConfigError, match="'backend1' is listed twice"):
        parse_service(svc(cluster=[{"name": "small", "backends": ["backend1", "backend1"]}],
                          rule=[], default_cluster="small"))
    with pytest.raises(ConfigError, match="already in cluster 'small'"):
        parse_service(svc(cluster=[{"name": "small", "backends": ["backend1"]},
                                   {"name": "big", "backends": ["backend1"]}]))


def test_unknown_field_and_policy_are_refused():
    with pytest.raises(ConfigError, match="weight: unknown field"):
        parse_service(svc(weight=3))
    with pytest.raises(ConfigError, match=r"clusters\[0\]\.policy"):
        parse_service(svc(cluster=[{"name": "small", "backends": ["b"], "policy": "random"}],
                          rule=[]))


def test_default_service_is_one_cluster_of_all():
    s = default_service(["backend1", "backend2"])
    assert [c.name for c in s.clusters] == ["all"]
    assert s.cluster_for("/anything").backends == ["backend1", "backend2"]


def test_route_matches_the_normal_form_of_the_path():
    """Service.route() is the reference: /x/../big/ is /big/, and a path with no normal
    form is refused (tests/test_uri_normalization.py has every form)."""
    s = parse_service(svc())
    assert s.cluster_for("/x/../big/1m.bin").name == "big"
    assert s.cluster_for("//big/%31m.bin").name == "big"
    assert s.cluster_for("/big/../1k.bin").name == "small"
    for path in ("/big%2f1m.bin", "/../big/", "/big/%zz"):
        with pytest.raises(PathRefused):
            s.route(path)


def test_rule_prefix_a_normalised_path_cannot_start_with_is_refused():
    with pytest.raises(ConfigError, match=r"rules\[0\]\.path_prefix: .*'/big/\.\./x'.*'/x'"):
        parse_service(svc(rule=[{"path_prefix": "/big/../x", "cluster": "big"}]))
    with pytest.raises(ConfigError, match=r"rules\[0\]\.path_prefix: .*may hold only"):
        parse_service(svc(rule=[{"path_prefix": "/caf%C3%A9", "cluster": "big"}]))
