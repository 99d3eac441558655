"""`lamina deploy --template template.yaml --stack-name NAME`: an AWS SAM template deployed to a Lamina server as a
stack (sam.py reads, checks and transforms it; stack.py applies it), with a progress display; `--delete` removes
the stack."""

from __future__ import annotations

import os
from pathlib import Path

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from lamina.cli.common import EXIT_USAGE, err, fail, out
from lamina.cli.sam import TemplateError, load, prepare, translate
from lamina.cli.stack import Stack, parse_parameters


def _session():  # noqa: ANN202 - a boto3 Session
    import boto3

    # Lamina on loopback takes any credentials; the user's own, if set, are used as they are.
    return boto3.Session(aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "lamina"),
                         aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "lamina"),
                         aws_session_token=os.environ.get("AWS_SESSION_TOKEN"))


def run(template: Path | None, stack_name: str, parameters: list[str], delete: bool, endpoint: str,
        region: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    notes: list[str] = []
    try:
        stack = Stack(stack_name, _session(), endpoint, region, notes.append)
        if delete:
            with err.status(f"Deleting stack [bold]{stack_name}[/]…"):
                count = stack.delete()
            for note in notes:
                out.print(f"  {note}", markup=False, soft_wrap=True)
            out.print(f"[green]✓[/] Deleted stack [bold]{stack_name}[/] ({count} resource(s) with their mappings)")
            return
        if template is None:
            fail("Error: --template is required (or --delete to remove the stack)", EXIT_USAGE)
        prepared = prepare(load(template), template.parent)
        cfn = translate(prepared, parse_parameters(parameters), region)
        resources = cfn["Resources"]
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                   "{task.total}"), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task(f"Deploying {stack_name}", total=len(resources))

            def step(logical: str, kind: str) -> None:
                if progress.tasks[task].description != f"Deploying {stack_name}":
                    progress.advance(task)
                progress.update(task, description=f"{logical} ({kind})")

            outputs = stack.deploy(cfn, prepared, parse_parameters(parameters), step)
            progress.update(task, completed=len(resources))
    except TemplateError as exc:
        fail(str(exc), EXIT_USAGE)
    except (ClientError, BotoCoreError) as exc:
        for note in notes:
            err.print(f"  {note}", markup=False, soft_wrap=True)
        fail(f"Error: {exc}")
    for note in notes:
        out.print(f"  {note}", markup=False, soft_wrap=True)
    out.print(f"[green]✓[/] Deployed stack [bold]{stack_name}[/] ({len(cfn['Resources'])} resources)")
    if outputs:
        out.print("Outputs:")
        for key, value in outputs.items():
            out.print(Text(f"  {key:<24} {value}"), soft_wrap=True)
