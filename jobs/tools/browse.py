"""Look at the running stack in a real browser: headless Chromium (Debian's) driven by Playwright.

Against `make up`, it signs in to Airflow and checks that the DAG is listed and that its runs
page shows a successful run; in MLflow it checks that the experiment's training runs are listed
with the model they logged, and that the registered model has a version with the `champion`
alias. Each page is saved as a PNG screenshot. A check that fails raises with what the page
showed instead.

    python -m jobs.tools.browse --config configs/local.yaml --out .local/stack/screenshots
"""

from __future__ import annotations

import argparse
import json
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

from jobs.infra.config import load_config
from jobs.tools.demo import DAG_ID, PROJECT

# Chromium on a machine with no network beyond loopback: no background calls home.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_MS = 60_000


class BrowserMissingError(RuntimeError):
    """No Chromium executable to drive."""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise BrowserMissingError(
            "no Chromium found: install Debian's package (apt-get install chromium)"
        )
    return found


def experiment_id(mlflow_url: str, name: str) -> str:
    """The id of an MLflow experiment, from the server's REST API."""
    query = urllib.parse.urlencode({"experiment_name": name})
    url = f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name?{query}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())["experiment"]["experiment_id"]


def capture(
    airflow_url: str,
    mlflow_url: str,
    out: Path,
    credentials: tuple[str, str],
    experiment: str,
    model_name: str,
    dag_id: str = DAG_ID,
) -> dict[str, Path]:
    """Check the Airflow and MLflow pages and screenshot each; {page: PNG path}."""
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots: dict[str, Path] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium(), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)

            def shot(name: str) -> None:
                shots[name] = out / f"{name}.png"
                page.screenshot(path=str(shots[name]), full_page=True)

            # Airflow: sign in (simple auth manager), the DAG list, the DAG's runs.
            page.goto(f"{airflow_url}/")
            page.fill("input[name=username]", credentials[0])
            page.fill("input[name=password]", credentials[1])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{airflow_url}/")
            page.goto(f"{airflow_url}/dags")
            expect(page.get_by_role("link", name=dag_id).first).to_be_visible()
            shot("airflow-dags")
            page.goto(f"{airflow_url}/dags/{dag_id}/runs")
            succeeded = page.get_by_role("row").filter(has_text="Success")
            expect(succeeded.first).to_be_visible()
            shot("airflow-runs")

            # MLflow: the experiment with its runs, the model with its champion.
            runs = f"#/experiments/{experiment_id(mlflow_url, experiment)}/runs"
            page.goto(f"{mlflow_url}/{runs}?workflowType=machine_learning")
            expect(page.get_by_text(model_name).first).to_be_visible()  # a run logged the model
            expect(page.get_by_text("als-").first).to_be_visible()
            shot("mlflow-experiment")
            page.goto(f"{mlflow_url}/#/models/{model_name}")
            expect(page.get_by_text("@ champion").first).to_be_visible()
            shot("mlflow-model")
        finally:
            browser.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    from jobs.tools import stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=PROJECT / "configs" / "local.yaml")
    parser.add_argument("--out", type=Path, default=stack.STATE / "screenshots")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    shots = capture(
        f"http://127.0.0.1:{stack.AIRFLOW_PORT}",
        f"http://127.0.0.1:{stack.MLFLOW_PORT}",
        args.out,
        (stack.USER, stack.PASSWORD),
        cfg.mlflow.experiment,
        cfg.mlflow.model_name,
    )
    for name, path in shots.items():
        print(f"[browse] {name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
