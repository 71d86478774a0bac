"""deploy/: every recipe parses; Kubernetes manifests pass their schemas (kubernetes-validate, bundled schemas);
the jobqueue config loads in dask-jobqueue; compose, systemd, cron and the Dockerfile have the structure they need.
``docker compose config`` is not run: this machine's docker CLI has no compose plugin, so compose is checked here."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import dask
import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
IMAGE = "eoshard:0.1.0"
K8S_VERSION = "1.33"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert {f.relative_to(DEPLOY).as_posix() for f in files} == {
        "compose.yaml",
        "kubernetes/daskcluster.yaml",
        "kubernetes/refresh-cronjob.yaml",
        "slurm/jobqueue.yaml",
    }
    for path in files:
        assert load_all(path), path


def test_refresh_cronjob_and_its_config_pass_the_kubernetes_schemas() -> None:
    docs = load_all(DEPLOY / "kubernetes" / "refresh-cronjob.yaml")
    assert [d["kind"] for d in docs] == ["ConfigMap", "CronJob"]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    cronjob = docs[1]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert container["command"][:3] == ["eoshard", "refresh", "/config/refresh.yaml"]
    assert "tcp://eoshard-scheduler:8786" in container["command"]  # the operator's scheduler service
    config = yaml.safe_load(docs[0]["data"]["refresh.yaml"])
    assert config["output"]["url"].startswith("s3://")


def test_a_broken_manifest_fails_the_schema_check() -> None:
    doc = load_all(DEPLOY / "kubernetes" / "refresh-cronjob.yaml")[1]
    doc["spec"]["concurrencyPolicy"] = 7
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_daskcluster_matches_the_operator_resource_layout() -> None:
    """DaskCluster is a custom resource (no bundled schema): check the fields the operator reads."""
    (doc,) = load_all(DEPLOY / "kubernetes" / "daskcluster.yaml")
    assert (doc["apiVersion"], doc["kind"], doc["metadata"]["name"]) == (
        "kubernetes.dask.org/v1",
        "DaskCluster",
        "eoshard",
    )
    worker, scheduler = doc["spec"]["worker"], doc["spec"]["scheduler"]
    assert isinstance(worker["replicas"], int) and worker["replicas"] >= 1
    for pod in (worker["spec"], scheduler["spec"]):
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001}
        (container,) = pod["containers"]
        assert container["image"] == IMAGE
    assert worker["spec"]["containers"][0]["args"][:2] == ["dask", "worker"]
    assert scheduler["spec"]["containers"][0]["args"] == ["dask", "scheduler"]
    ports = {p["name"]: p["port"] for p in scheduler["service"]["ports"]}
    assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}
    assert scheduler["service"]["selector"]["dask.org/cluster-name"] == doc["metadata"]["name"]


def test_jobqueue_config_loads_in_dask_jobqueue() -> None:
    from dask_jobqueue import SLURMCluster

    config = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())
    # merged over dask-jobqueue's defaults, as dask merges ~/.config/dask/jobqueue.yaml
    settings = {f"jobqueue.slurm.{key}": value for key, value in config["jobqueue"]["slurm"].items()}
    options = {"host": "127.0.0.1", "dashboard_address": ":0"}
    with dask.config.set(settings), SLURMCluster(scheduler_options=options) as cluster:
        script = cluster.job_script()
    assert "#SBATCH -J eoshard-worker" in script
    assert "#SBATCH --mem=6G" in script
    assert "#SBATCH -t 04:00:00" in script
    assert "#SBATCH -p compute" in script
    assert "source ~/eoshard/.venv/bin/activate" in script
    assert re.search(r"distributed.cli.dask_worker tcp://127\.0\.0\.1:\d+ --name dummy-name --nthreads 1", script)


def test_compose_starts_scheduler_workers_stac_api_and_object_store() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"scheduler", "worker", "database", "stac-api", "minio", "buckets"}
    assert services["scheduler"]["image"] == services["worker"]["image"] == IMAGE  # the x-eoshard anchor
    assert services["worker"]["command"][:3] == ["dask", "worker", "tcp://scheduler:8786"]
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["worker"]["environment"]["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert "stac_fastapi.pgstac.app:create_app" in services["stac-api"]["command"]
    assert services["stac-api"]["environment"]["PGHOST"] == "database"
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
            assert "healthcheck" in services[dependency], dependency
    declared = set(compose["volumes"])
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert used == declared


def test_systemd_units_and_cron_line_run_the_refresh() -> None:
    service = configparser.ConfigParser(interpolation=None, strict=True)
    service.read(DEPLOY / "systemd" / "eoshard-refresh.service")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"].split()[1:3] == ["refresh", "configs/my-aoi.yaml"]
    timer = configparser.ConfigParser(interpolation=None, strict=True)
    timer.read(DEPLOY / "systemd" / "eoshard-refresh.timer")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:30:00 UTC"
    assert timer["Timer"]["Unit"] == "eoshard-refresh.service"
    lines = [
        ln for ln in (DEPLOY / "cron" / "eoshard-refresh.cron").read_text().splitlines() if ln and ln[0] != "#"
    ]
    (line,) = lines
    fields = line.split(maxsplit=5)
    assert fields[:5] == ["30", "2", "*", "*", "*"]
    assert "eoshard refresh configs/my-aoi.yaml" in fields[5]


def test_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.findall(r"^FROM \S+ AS (\w+)$", text, re.M) == ["build", "runtime"]
    assert "torch==2.13.0" in text and "download.pytorch.org/whl/cpu" in text
    assert "-c /wheels/constraints.txt" in text
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and not users[-1].startswith(("0", "root"))
