"""The loader end to end on real directories: what loads, in what order, with what defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from source_testdata import CONFIGMAP, DEPLOYMENT, EXAMPLE_REPO, ORDINARY

from reconciler.source import (
    LoadedRepository,
    ManifestErrors,
    SourceLocation,
    available_environments,
    load_repository,
)
from schemas import ConfigMap, Deployment, Pod, Secret, Service
from tests.fixtures.corpus import corpus_folder_params, require_shared_corpus


def by_key(repository: LoadedRepository) -> dict[str, object]:
    return {str(item.obj.key): item.obj for item in repository.objects}


def errors_of(root: Path, **kwargs) -> list[str]:
    with pytest.raises(ManifestErrors) as caught:
        load_repository(root, **kwargs)
    return [str(error) for error in caught.value.errors]


# --- repositories that must load -----------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "web", "api", "version"),
    [
        (None, 3, 2, "1.0.0"),
        ("dev", 1, 1, "1.1.0-dev"),
        ("prod", 3, 3, "1.0.0"),
    ],
)
def test_example_repo_loads_in_every_environment(env, web, api, version):
    repository = load_repository(EXAMPLE_REPO, env=env)
    objects = by_key(repository)
    assert set(objects) == {
        "Namespace/shop",
        "Node/local",
        "ConfigMap/shop/web-page",
        "ConfigMap/shop/api-data",
        "Service/shop/web",
        "Service/shop/api",
        "Deployment/shop/web",
        "Deployment/shop/api",
    }
    web_deployment = objects["Deployment/shop/web"]
    assert isinstance(web_deployment, Deployment)
    assert web_deployment.spec.replicas == web
    assert objects["Deployment/shop/api"].spec.replicas == api
    page = objects["ConfigMap/shop/web-page"]
    assert isinstance(page, ConfigMap)
    assert f"<strong>{version}</strong>" in page.data["index.html"]
    service = objects["Service/shop/web"]
    assert isinstance(service, Service)
    assert service.spec.type == "NodePort"
    assert service.spec.ports[0].node_port == 30080
    container = web_deployment.spec.template.spec.containers[0]
    assert container.image == "capstan.local/busybox:1"
    assert container.readiness_probe is not None
    assert container.liveness_probe is not None
    assert available_environments(EXAMPLE_REPO) == ["dev", "prod"]


def test_example_repo_sources_name_rendered_templates():
    repository = load_repository(EXAMPLE_REPO, env="dev")
    sources = {str(item.obj.key): item.source for item in repository.objects}
    assert sources["Deployment/shop/web"].file == "web/deployment.yaml.j2"
    assert sources["Deployment/shop/web"].rendered
    assert sources["Namespace/shop"] == SourceLocation("namespaces.yaml", 2, 1)


@pytest.mark.parametrize("folder", corpus_folder_params())
def test_corpus_folders_load_unchanged_into_default(folder: Path):
    require_shared_corpus()
    repository = load_repository(folder)
    assert repository.objects
    assert {item.obj.metadata.namespace for item in repository.objects} == {"default"}


def test_ordinary_manifests_load_with_anchors_quantities_named_ports_and_value_from():
    repository = load_repository(ORDINARY)
    objects = by_key(repository)
    deployment = objects["Deployment/default/shop"]
    assert isinstance(deployment, Deployment)
    # Merge keys expanded into the template's labels.
    assert deployment.spec.template.metadata.labels == {
        "app.kubernetes.io/name": "shop",
        "app.kubernetes.io/part-of": "shop",
        "tier": "frontend",
    }
    shop, sidecar = deployment.spec.template.spec.containers
    assert shop.resources.requests["cpu"].millicores == 250
    assert shop.resources.limits["memory"].bytes == 1_000_000_000
    assert shop.resources.requests["memory"].bytes == 128 * 1024 * 1024
    assert sidecar.resources.requests["cpu"].millicores == 10
    # The liveness probe is an alias of the readiness probe, named port included.
    assert shop.liveness_probe == shop.readiness_probe
    assert deployment.spec.template.spec.port_number("metrics") == 9090
    assert [env.name for env in shop.env] == ["LOG_LEVEL", "DB_PASSWORD", "POD_NAME"]
    assert shop.env[1].value_from.secret_key_ref.key == "password"
    config = objects["ConfigMap/default/shop-config"]
    assert config.data["build-date"] == "2024-01-15"
    assert isinstance(objects["Secret/default/shop-secret"], Secret)
    pod = objects["Pod/tools/debug"]
    assert isinstance(pod, Pod)
    assert pod.spec.containers[0].image_pull_policy == "Always"  # :latest


def test_objects_come_in_apply_order_then_namespace_and_name():
    repository = load_repository(ORDINARY)
    kinds = [item.obj.kind for item in repository.objects]
    assert kinds == [
        "Namespace",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "Service",
        "Deployment",
        "Pod",
    ]
    assert repository.files == ["app.yaml", "pod.yml"]
    again = load_repository(ORDINARY)
    assert [item.obj for item in again.objects] == [item.obj for item in repository.objects]


def test_namespaced_objects_default_to_default_cluster_scoped_stay_unset(make_repo):
    root = make_repo(
        {
            "cm.yaml": CONFIGMAP,
            "ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n",
            "cm2.yaml": CONFIGMAP.replace("name: settings", "name: other\n  namespace: ''"),
        }
    )
    objects = by_key(load_repository(root))
    assert objects["ConfigMap/default/settings"].metadata.namespace == "default"
    assert objects["ConfigMap/default/other"].metadata.namespace == "default"
    assert objects["Namespace/shop"].metadata.namespace is None


def test_empty_repository_loads_as_nothing(make_repo):
    repository = load_repository(make_repo({"README.md": "# nothing yet\n"}))
    assert repository.objects == []


# --- what is read and what is skipped ------------------------------------------------------


def test_hidden_partial_values_environments_and_ignored_files_are_not_manifests(make_repo):
    broken = "this: [is not loaded\n"
    root = make_repo(
        {
            "cm.yaml": CONFIGMAP,
            ".github/workflows/ci.yml": broken,
            ".hidden.yaml": broken,
            "_partials/x.yaml": broken,
            "_notes.j2": broken,
            "values.yaml": "replicas: 2\n",
            "environments/dev.yaml": "replicas: 1\n",
            "kustomize/kustomization.yaml": broken,
            "docs/example.yaml": broken,
            "apps/skip-me.yaml": broken,
            "notes.txt": broken,
            ".capstanignore": (
                "# not manifests\nkustomization.yaml\ndocs/\napps/skip-*.yaml\n_partials/\n"
            ),
        }
    )
    repository = load_repository(root)
    assert repository.files == ["cm.yaml"]


def test_a_directory_named_like_a_dir_only_pattern_is_skipped_but_a_file_is_not(make_repo):
    root = make_repo(
        {
            "build/x.yaml": "broken: [\n",
            "cm/build": "",
            "cm.yaml": CONFIGMAP,
            ".capstanignore": "build/\n",
        }
    )
    assert load_repository(root).files == ["cm.yaml"]


def test_symlinks_inside_the_repository_are_followed_once(make_repo):
    root = make_repo({"base/cm.yaml": CONFIGMAP})
    os.symlink("base", root / "again")
    os.symlink("cm.yaml", root / "base" / "alias.yaml")
    repository = load_repository(root)
    assert [str(item.obj.key) for item in repository.objects] == ["ConfigMap/default/settings"]


def test_subdir_loads_only_that_part_with_the_root_values(make_repo):
    root = make_repo(
        {
            "values.yaml": "name: from-root-values\n",
            "apps/cm.yaml.j2": CONFIGMAP.replace("settings", "{{ values.name }}"),
            "other/broken.yaml": "not: [valid\n",
        }
    )
    repository = load_repository(root, subdir="apps")
    assert [item.obj.metadata.name for item in repository.objects] == ["from-root-values"]
    assert repository.files == ["apps/cm.yaml.j2"]
    assert any("resolves outside the repository" in e for e in errors_of(root, subdir="../"))
    assert any("not a directory" in e for e in errors_of(root, subdir="values.yaml"))


def test_a_missing_root_is_an_error_not_a_crash(tmp_path: Path):
    assert any("cannot open repository" in e for e in errors_of(tmp_path / "nope"))
    (tmp_path / "file").write_text("")
    assert any("not a directory" in e for e in errors_of(tmp_path / "file"))


def test_a_fifo_named_like_a_manifest_is_refused_without_blocking(make_repo):
    root = make_repo({"cm.yaml": CONFIGMAP})
    os.mkfifo(root / "pipe.yaml")
    assert errors_of(root) == ["pipe.yaml: not a regular file"]


def test_non_utf8_files_are_errors(make_repo):
    root = make_repo({})
    (root / "latin1.yaml").write_bytes(b"a: caf\xe9\n")
    assert errors_of(root) == ["latin1.yaml: not UTF-8 text (bad byte at offset 6)"]


# --- values and environments ---------------------------------------------------------------


def test_environment_values_merge_deeply_over_the_defaults(make_repo):
    root = make_repo(
        {
            "values.yaml": "app:\n  name: a\n  data: {x: '1', y: '2'}\nlist: [1, 2]\n",
            "environments/dev.yaml": "app:\n  data: {y: '3'}\nlist: [9]\n",
            "cm.yaml.j2": (
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ values.app.name }}\n"
                "data:\n  x: '{{ values.app.data.x }}'\n  y: '{{ values.app.data.y }}'\n"
                "  list: '{{ values.list | join(\",\") }}'\n  env: '{{ env }}'\n"
            ),
        }
    )
    (plain,) = load_repository(root).objects
    assert plain.obj.data == {"x": "1", "y": "2", "list": "1,2", "env": "None"}
    (dev,) = load_repository(root, env="dev").objects
    assert dev.obj.data == {"x": "1", "y": "3", "list": "9", "env": "dev"}
    assert load_repository(root, env="dev").values == {
        "app": {"name": "a", "data": {"x": "1", "y": "3"}},
        "list": [9],
    }


def test_an_unknown_environment_lists_the_available_ones(make_repo):
    root = make_repo(
        {
            "cm.yaml": CONFIGMAP,
            "environments/dev.yaml": "{}\n",
            "environments/prod.yaml": "{}\n",
        }
    )
    assert errors_of(root, env="staging") == [
        "environments/: unknown environment 'staging'; available: dev, prod"
    ]
    assert errors_of(root, env="../values") == [
        "environments/: unknown environment '../values'; available: dev, prod"
    ]


def test_broken_values_files_are_errors_and_templates_are_not_rendered(make_repo):
    root = make_repo(
        {
            "values.yaml": "- a list\n",
            "cm.yaml.j2": CONFIGMAP,
            "bad.yaml": "kind: [\n",
        }
    )
    errors = errors_of(root)
    assert errors[0].startswith("bad.yaml:2:1: YAML syntax error")
    assert errors[1] == "values.yaml:1:1: values must be a mapping, not a list"
    assert len(errors) == 2


# --- the all-or-nothing contract -----------------------------------------------------------


def test_every_error_of_every_file_is_reported_at_once(make_repo):
    root = make_repo(
        {
            "a.yaml": DEPLOYMENT.replace("replicas: 2", "replicas: two"),
            "b/c.yaml": CONFIGMAP + "---\n" + CONFIGMAP.replace("kind: ConfigMap", "kind: Ingress"),
            "d.yaml": "a: [\n",
        }
    )
    with pytest.raises(ManifestErrors) as caught:
        load_repository(root)
    exc = caught.value
    assert [(e.file, e.line, e.field_path) for e in exc.errors] == [
        ("a.yaml", 6, "spec.replicas"),
        ("b/c.yaml", 9, "kind"),
        ("d.yaml", 2, ""),
    ]
    assert exc.lines()[0].startswith(f"{root}/a.yaml:6:3: spec.replicas: ")
    assert str(exc).startswith("3 errors:\n")


def test_undefined_namespaces_are_created_with_a_warning_at_the_namespace_field(make_repo):
    root = make_repo({"cm.yaml": CONFIGMAP.replace("name: settings", "name: s\n  namespace: shop")})
    repository = load_repository(root)
    assert [str(item.obj.key) for item in repository.objects] == [
        "Namespace/shop",
        "ConfigMap/shop/s",
    ]
    assert repository.objects[0].source == SourceLocation("cm.yaml", 5, 3)
    assert [str(warning) for warning in repository.warnings] == [
        "cm.yaml:5:3: metadata.namespace: namespace 'shop' is not defined in the repository; "
        "Capstan creates it (as Argo CD does with CreateNamespace=true) and deletes it when no "
        "manifest uses it. To manage it yourself, add namespaces/shop.yaml with: "
        "apiVersion: v1, kind: Namespace, metadata: {name: shop}"
    ]


def test_load_balancer_ip_is_kept_with_a_warning_at_its_line(make_repo):
    """Kubernetes lets a load balancer that cannot honour ``loadBalancerIP`` ignore it;
    Capstan's ServiceLB serves every node's own address, so the field is a warning."""
    service = (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: lb\nspec:\n  type: LoadBalancer\n"
        "  loadBalancerIP: 104.154.109.191\n  selector:\n    app: web\n  ports:\n  - port: 80\n"
    )
    repository = load_repository(make_repo({"svc.yaml": service}))
    (loaded,) = repository.objects
    assert loaded.obj.spec.load_balancer_ip == "104.154.109.191"  # type: ignore[attr-defined]
    assert loaded.obj.to_dict()["spec"]["loadBalancerIP"] == "104.154.109.191"
    (warning,) = repository.warnings
    where = (warning.file, warning.line, warning.field_path)
    assert where == ("svc.yaml", 7, "spec.loadBalancerIP")
    assert "ignored: Capstan's ServiceLB serves a LoadBalancer Service on every node's" in str(
        warning
    )


def test_secret_values_never_appear_in_errors(make_repo):
    secret = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n"
        "data:\n  password: not-base64-hunter2!\nstringData:\n  token: 12345\n"
    )
    root = make_repo({"s.yaml": secret})
    errors = errors_of(root)
    assert errors
    assert not any("hunter2" in e or "12345" in e for e in errors), errors


def test_symlinks_to_hidden_files_are_not_read_as_manifests_or_values(make_repo):
    root = make_repo({".git/config": "url: https://token-abc@example.com/repo\n"})
    os.symlink(".git/config", root / "config.yaml")
    os.symlink(".git/config", root / "values.yaml")
    errors = errors_of(root)
    assert errors == [
        "config.yaml: resolves to a hidden path (.git, ...), which is never read",
        "values.yaml: resolves to a hidden path (.git, ...), which is never read",
    ]


def test_a_name_ending_in_a_newline_is_refused_like_any_other_bad_name(make_repo):
    # Python's `$` matches before a trailing newline; "web\n" must not pass as a DNS label.
    root = make_repo(
        {
            "svc.yaml": 'apiVersion: v1\nkind: Service\nmetadata:\n  name: "web\\n"\n'
            "spec:\n  ports: [{port: 80}]\n"
        }
    )
    (error,) = errors_of(root)
    expected = "svc.yaml:4:3: metadata.name: 'web\\n': must be a DNS-1035 label"
    assert error.startswith(expected), error
