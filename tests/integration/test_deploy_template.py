"""`lamina deploy --template`: AWS SAM templates transformed by aws-sam-translator and applied as a stack.

The templates here follow the shapes of AWS's SAM sample applications (hello world behind an API event, an SQS
consumer, EventBridge rules and schedules), written for these tests; test_sam_samples.py deploys AWS's own."""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from helpers import ACCESS_KEY, REGION, SECRET_KEY, FunctionUrl, run_lamina, unique_name

pytestmark = pytest.mark.timeout(240)

HELLO = '''
import json


def lambda_handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"message": "MESSAGE", "path": event.get("rawPath")})}
'''

HELLO_TEMPLATE = """
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: hello world behind an API event
Globals:
  Function:
    Timeout: 3
Resources:
  HelloWorldFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: hello_world/
      Handler: app.lambda_handler
      Runtime: python3.11
      AutoPublishAlias: live
      Events:
        HelloWorld:
          Type: Api
          Properties:
            Path: /hello
            Method: get
Outputs:
  HelloWorldApi:
    Description: API Gateway endpoint URL for Prod stage for Hello World function
    Value: !Sub "https://${ServerlessRestApi}.execute-api.${AWS::Region}.amazonaws.com/Prod/hello/"
  HelloWorldFunction:
    Value: !GetAtt HelloWorldFunction.Arn
  HelloWorldFunctionIamRole:
    Value: !GetAtt HelloWorldFunctionRole.Arn
"""

CONSUMER = '''
import os
from greeting import prefix


def handler(event, context):
    for record in event["Records"]:
        print(prefix(), os.environ["STAGE"], "got", record["body"], record["eventSource"])
    return {}
'''

LAYER = '''
def prefix():
    return "layer-says"
'''

SQS_TEMPLATE = """
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: dev
Resources:
  Shared:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer/
      CompatibleRuntimes: [python3.11]
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 30
  Consumer:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: consumer/
      Handler: app.handler
      Runtime: python3.11
      MemorySize: 256
      ReservedConcurrentExecutions: 5
      Layers: [!Ref Shared]
      Environment:
        Variables:
          STAGE: !Ref Stage
          QUEUE: !Sub "${Queue.QueueName} in ${AWS::Region}"
      Events:
        FromQueue:
          Type: SQS
          Properties:
            Queue: !GetAtt Queue.Arn
            BatchSize: 10
Outputs:
  QueueUrl:
    Value: !Ref Queue
"""

SQS_TEMPLATE_NO_QUEUE = """
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: dev
Resources:
  Shared:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer/
  Consumer:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: consumer/
      Handler: app.handler
      Runtime: python3.11
      Layers: [!Ref Shared]
      Environment:
        Variables:
          STAGE: !Ref Stage
"""

SCHEDULED_TEMPLATE = """
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Resources:
  ScheduledFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: hello_world/
      Handler: app.lambda_handler
      Runtime: python3.11
      Events:
        Stream:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Table.StreamArn
            StartingPosition: LATEST
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
"""


def client(kind: str, endpoint: str):
    return boto3.client(kind, endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, config=Config(retries={"total_max_attempts": 1}))


def write(folder: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def deploy(endpoint: str, folder: Path, *args: str, ok: bool = True):
    proc = run_lamina(endpoint, "deploy", *args, cwd=folder, timeout=180)
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def output(proc, key: str) -> str:
    m = re.search(rf"^\s+{key}\s+(\S+)$", proc.stdout, re.M)
    assert m, proc.stdout
    return m.group(1)


def get(endpoint: str, url: str) -> dict:
    """GET a function URL (by its host name, over 127.0.0.1) and its decoded JSON body; it must answer 200."""
    m = re.match(r"(http://[^/]+/)(.*)$", url)
    assert m, url
    return FunctionUrl(endpoint, m.group(1)).json("GET", "/" + m.group(2))


def test_hello_world_api_becomes_a_function_url(endpoint, tmp_path):
    stack = unique_name("hello")
    app = write(tmp_path, {"template.yaml": HELLO_TEMPLATE, "hello_world/app.py": HELLO.replace("MESSAGE", "one")})
    proc = deploy(endpoint, app, "--template", "template.yaml", "--stack-name", stack)
    assert f"Deployed stack {stack}" in proc.stdout
    assert "Lamina has no IAM" in proc.stdout   # the role is recorded, and says so
    url = output(proc, "HelloWorldApi")
    assert ".lambda-url." in url and url.endswith("/hello/")
    assert output(proc, "HelloWorldFunction").endswith(f":function:{stack}-HelloWorldFunction")
    assert get(endpoint, url) == {"message": "one", "path": "/hello/"}
    lam = client("lambda", endpoint)
    fn = f"{stack}-HelloWorldFunction"
    assert lam.get_alias(FunctionName=fn, Name="live")["FunctionVersion"] == "1"
    tags = lam.list_tags(Resource=lam.get_function(FunctionName=fn)["Configuration"]["FunctionArn"])["Tags"]
    assert tags["lamina:stack"] == stack and tags["lamina:logical-id"] == "HelloWorldFunction"

    # Deploying again updates in place: new code, a new version behind the alias, the same URL.
    write(app, {"hello_world/app.py": HELLO.replace("MESSAGE", "two")})
    proc = deploy(endpoint, app, "--template", "template.yaml", "--stack-name", stack)
    assert output(proc, "HelloWorldApi") == url
    assert lam.get_alias(FunctionName=fn, Name="live")["FunctionVersion"] == "2"
    assert get(endpoint, url) == {"message": "two", "path": "/hello/"}

    deploy(endpoint, app, "--delete", "--stack-name", stack)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=fn)


def test_sqs_consumer_with_layer_and_parameters(endpoint, tmp_path):
    stack = unique_name("sqs")
    app = write(tmp_path, {"template.yaml": SQS_TEMPLATE, "consumer/app.py": CONSUMER,
                           "layer/python/greeting.py": LAYER})
    proc = deploy(endpoint, app, "--template", "template.yaml", "--stack-name", stack, "--parameter", "Stage=prod")
    queue_url = output(proc, "QueueUrl")
    lam, sqs, logs = client("lambda", endpoint), client("sqs", endpoint), client("logs", endpoint)
    fn = f"{stack}-Consumer"
    cfg = lam.get_function_configuration(FunctionName=fn)
    assert cfg["MemorySize"] == 256 and cfg["Environment"]["Variables"]["STAGE"] == "prod"
    assert cfg["Environment"]["Variables"]["QUEUE"] == f"{stack}-Queue in {REGION}"
    assert len(cfg["Layers"]) == 1
    assert lam.get_function_concurrency(FunctionName=fn)["ReservedConcurrentExecutions"] == 5
    mappings = lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"]
    assert len(mappings) == 1 and mappings[0]["BatchSize"] == 10
    assert sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])["Attributes"] == \
        {"VisibilityTimeout": "30"}

    sqs.send_message(QueueUrl=queue_url, MessageBody="order-17")
    deadline = time.monotonic() + 30
    found: list = []
    while not found and time.monotonic() < deadline:
        time.sleep(0.3)
        with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
            found = logs.filter_log_events(logGroupName=f"/aws/lambda/{fn}", filterPattern='"got order-17"')["events"]
    assert found and "layer-says prod got order-17 aws:sqs" in found[0]["message"]

    # A template without the queue (and its event) removes them from the stack.
    write(app, {"template.yaml": SQS_TEMPLATE_NO_QUEUE})
    deploy(endpoint, app, "--template", "template.yaml", "--stack-name", stack)
    assert queue_url not in sqs.list_queues().get("QueueUrls", [])
    assert lam.get_function_configuration(FunctionName=fn)["FunctionName"] == fn

    proc = deploy(endpoint, app, "--delete", "--stack-name", stack)
    assert f"Deleted stack {stack}" in proc.stdout
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=fn)


EVENTS_HANDLER = '''
import json


def handler(event, context):
    print("EVENT", json.dumps(event, sort_keys=True))
    return {}
'''

EVENTS_TEMPLATE = """
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Resources:
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: worker/
      Handler: app.handler
      Runtime: python3.11
      Events:
        Nightly:
          Type: Schedule
          Properties:
            Schedule: cron(0 3 * * ? *)
            Input: '{"job": "nightly"}'
        Hourly:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(1 hour)
            Input: '{"job": "hourly"}'
        Orders:
          Type: EventBridgeRule
          Properties:
            Pattern:
              source: [shop.orders]
  AuditRule:
    Type: AWS::Events::Rule
    Properties:
      Description: audit every shop event
      EventPattern:
        source: [{prefix: shop.}]
      Targets:
        - Id: worker
          Arn: !GetAtt Worker.Arn
          Input: '{"audit": true}'
  Weekly:
    Type: AWS::Scheduler::Schedule
    Properties:
      ScheduleExpression: cron(0 9 ? * MON *)
      FlexibleTimeWindow: {Mode: 'OFF'}
      Target:
        Arn: !GetAtt Worker.Arn
        RoleArn: !GetAtt WorkerRole.Arn
        Input: '{"job": "weekly"}'
Outputs:
  AuditRuleName:
    Value: !Ref AuditRule
  AuditRuleArn:
    Value: !GetAtt AuditRule.Arn
  WeeklyArn:
    Value: !GetAtt Weekly.Arn
"""


def test_eventbridge_rules_and_schedules(endpoint, tmp_path):
    stack = unique_name("ev")
    app = write(tmp_path, {"template.yaml": EVENTS_TEMPLATE, "worker/app.py": EVENTS_HANDLER})
    proc = deploy(endpoint, app, "--template", "template.yaml", "--stack-name", stack)
    events, scheduler, lam = client("events", endpoint), client("scheduler", endpoint), client("lambda", endpoint)
    fn = f"{stack}-Worker"
    fn_arn = lam.get_function(FunctionName=fn)["Configuration"]["FunctionArn"]
    audit = output(proc, "AuditRuleName")
    assert audit == f"{stack}-AuditRule"
    assert output(proc, "AuditRuleArn") == events.describe_rule(Name=audit)["Arn"]
    assert output(proc, "WeeklyArn").endswith(f":schedule/default/{stack}-Weekly")
    rules = {r["Name"]: r for r in events.list_rules()["Rules"] if r["Name"].startswith(f"{stack}-")}
    assert sorted(rules) == sorted([audit, f"{stack}-WorkerNightly", f"{stack}-WorkerOrders"])
    assert rules[f"{stack}-WorkerNightly"]["ScheduleExpression"] == "cron(0 3 * * ? *)"
    nightly_targets = events.list_targets_by_rule(Rule=f"{stack}-WorkerNightly")["Targets"]
    assert [(t["Arn"], t["Input"]) for t in nightly_targets] == [(fn_arn, '{"job": "nightly"}')]
    hourly = scheduler.get_schedule(Name="WorkerHourly")   # SAM names a ScheduleV2 schedule after its event
    assert hourly["ScheduleExpression"] == "rate(1 hour)" and hourly["Target"]["Arn"] == fn_arn
    assert scheduler.get_schedule(Name=f"{stack}-Weekly")["Target"]["Input"] == '{"job": "weekly"}'
    policy = json.loads(lam.get_policy(FunctionName=fn)["Policy"])
    assert {s["Principal"]["Service"] for s in policy["Statement"]} == {"events.amazonaws.com"}

    # The rules work: an order event reaches the function through the SAM event's rule and the audit rule.
    events.put_events(Entries=[{"Source": "shop.orders", "DetailType": "placed", "Detail": '{"id": "o-9"}'}])
    logs = client("logs", endpoint)
    bodies: list[str] = []   # (the rate schedule may have fired too: AWS's first occurrence is at creation)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.3)
        with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
            bodies = [e["message"].split("EVENT ", 1)[1].strip() for e in logs.filter_log_events(
                logGroupName=f"/aws/lambda/{fn}", filterPattern='"EVENT"')["events"]]
        if '{"audit": true}' in bodies and any('"o-9"' in b for b in bodies):
            break
    assert '{"audit": true}' in bodies and sum('"o-9"' in b for b in bodies) == 1, bodies

    # Deploying again updates them in place and removes the ones the template no longer has.
    changed = (EVENTS_TEMPLATE.replace("rate(1 hour)", "rate(2 hours)")
               .replace("cron(0 3 * * ? *)", "cron(0 4 * * ? *)"))
    changed = changed[:changed.index("  Weekly:")] + "Outputs:\n  AuditRuleName:\n    Value: !Ref AuditRule\n"
    write(app, {"template.yaml": changed})
    deploy(endpoint, app, "--template", "template.yaml", "--stack-name", stack)
    assert scheduler.get_schedule(Name="WorkerHourly")["ScheduleExpression"] == "rate(2 hours)"
    assert events.describe_rule(Name=f"{stack}-WorkerNightly")["ScheduleExpression"] == "cron(0 4 * * ? *)"
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name=f"{stack}-Weekly")
    tags = lam.list_tags(Resource=fn_arn)["Tags"]
    assert "lamina:schedule:Weekly" not in tags and tags["lamina:rule:AuditRule"] == f"default/{audit}"

    deploy(endpoint, app, "--delete", "--stack-name", stack)
    assert [r for r in events.list_rules()["Rules"] if r["Name"].startswith(f"{stack}-")] == []
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name="WorkerHourly")


def test_a_rule_the_stack_does_not_own_is_left_alone(endpoint, tmp_path):
    events = client("events", endpoint)
    stack = unique_name("rule")
    events.put_rule(Name=f"{stack}-AuditRule", ScheduleExpression="rate(1 day)")
    try:
        app = write(tmp_path, {"template.yaml": EVENTS_TEMPLATE, "worker/app.py": EVENTS_HANDLER})
        proc = deploy(endpoint, app, "--template", "template.yaml", "--stack-name", stack, ok=False)
        assert proc.returncode == 2 and f"rule {stack}-AuditRule on bus default exists and belongs to no stack" \
            in proc.stderr
        assert events.describe_rule(Name=f"{stack}-AuditRule")["ScheduleExpression"] == "rate(1 day)"
    finally:
        deploy(endpoint, app, "--delete", "--stack-name", stack)
        events.delete_rule(Name=f"{stack}-AuditRule")


def test_rule_targets_must_be_template_functions(endpoint, tmp_path):
    template = EVENTS_TEMPLATE.replace("          Arn: !GetAtt Worker.Arn\n",
                                       "          Arn: arn:aws:sqs:us-east-1:000000000000:elsewhere\n")
    app = write(tmp_path, {"template.yaml": template, "worker/app.py": EVENTS_HANDLER})
    proc = deploy(endpoint, app, "--template", "template.yaml", "--stack-name", unique_name("tgt"), ok=False)
    assert proc.returncode == 2
    assert "AuditRule (AWS::Events::Rule): target worker is not a function of this template" in proc.stderr


def test_what_lamina_lacks_is_refused_and_listed(endpoint, tmp_path):
    app = write(tmp_path, {"template.yaml": SCHEDULED_TEMPLATE, "hello_world/app.py": HELLO})
    stack = unique_name("sched")
    proc = deploy(endpoint, app, "--template", "template.yaml", "--stack-name", stack, ok=False)
    assert proc.returncode == 2
    assert "ScheduledFunction.Events.Stream (DynamoDB): Lamina has no such event source" in proc.stderr
    assert "Table (AWS::DynamoDB::Table): Lamina has no such resource" in proc.stderr
    lam = client("lambda", endpoint)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):   # nothing was created
        lam.get_function(FunctionName=f"{stack}-ScheduledFunction")


def test_parameters_and_local_code_are_checked(endpoint, tmp_path):
    app = write(tmp_path, {"template.yaml": HELLO_TEMPLATE.replace("hello_world/", "missing/")})
    proc = deploy(endpoint, app, "--template", "template.yaml", "--stack-name", unique_name("bad"), ok=False)
    assert proc.returncode == 2 and "CodeUri missing/ does not exist" in proc.stderr
    app = write(tmp_path / "p", {"template.yaml": SQS_TEMPLATE, "consumer/app.py": CONSUMER,
                                 "layer/python/greeting.py": LAYER})
    proc = deploy(endpoint, app, "--template", "template.yaml", "--stack-name", unique_name("bad"),
                  "--parameter", "Nope=1", ok=False)
    assert proc.returncode == 2 and "Unknown parameter(s): Nope" in proc.stderr


def test_a_function_the_stack_does_not_own_is_left_alone(endpoint, tmp_path):
    from helpers import create_function

    lam = client("lambda", endpoint)
    name = unique_name("mine")
    create_function(lam, name, {"app.py": HELLO}, handler="app.lambda_handler")
    try:
        template = HELLO_TEMPLATE.replace("      CodeUri: hello_world/\n",
                                          f"      FunctionName: {name}\n      CodeUri: hello_world/\n")
        app = write(tmp_path, {"template.yaml": template, "hello_world/app.py": HELLO})
        proc = deploy(endpoint, app, "--template", "template.yaml", "--stack-name", unique_name("grab"), ok=False)
        assert proc.returncode == 2 and f"function {name} exists and belongs to no stack" in proc.stderr
        assert "Tags" not in lam.get_function(FunctionName=name) or \
            "lamina:stack" not in lam.get_function(FunctionName=name)["Tags"]
    finally:
        lam.delete_function(FunctionName=name)
