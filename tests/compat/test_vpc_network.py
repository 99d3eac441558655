"""A VPC function reaches a real PostgreSQL server on a private subnet (Debian's postgresql, started by the test in a
network namespace it makes and attaches to the subnet's bridge) with psycopg shipped in its zip; a function without
VpcConfig, or with a security group that does not allow 5432, cannot; the database sees one source address, the
interface's; a security group change applies to the running environment at once."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest

from helpers import invoke_ok, unique_name

pytestmark = pytest.mark.usefixtures("linux_sandbox")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
DB_ADDRESS = "10.212.1.10"

APP = '''
import psycopg

def handler(event, context):
    try:
        with psycopg.connect(host=event["host"], port=5432, user="postgres", dbname="postgres",
                             connect_timeout=event.get("timeout", 2)) as conn:
            row = conn.execute("select host(inet_client_addr()), 42").fetchone()
        return {"ok": True, "client": row[0], "answer": row[1]}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
'''


def _sh(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, f"{argv}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def psycopg_files() -> dict[str, bytes]:
    target = Path(tempfile.mkdtemp(prefix="lamina-psycopg-"))
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "psycopg[binary]"],
                       check=True, capture_output=True)
        files = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()
                 and "__pycache__" not in p.parts}
    finally:
        shutil.rmtree(target, ignore_errors=True)
    return {**files, "app.py": APP.encode()}


@pytest.fixture
def network(endpoint: str):
    if not (PG_BIN / "postgres").exists():
        pytest.skip("Debian's postgresql is not installed (make test installs it)")
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                       aws_secret_access_key="test")
    vpc = ec2.create_vpc(CidrBlock="10.212.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.212.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(VpcId=vpc, GroupName=unique_name("app"), Description="app")["GroupId"]
    closed = ec2.create_security_group(VpcId=vpc, GroupName=unique_name("web"), Description="443 only")["GroupId"]
    ec2.revoke_security_group_egress(GroupId=closed, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ec2.authorize_security_group_egress(GroupId=closed, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    bridge = "lsb" + subnet.split("-")[1][:8]
    deadline = time.monotonic() + 10
    while subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    ns, link = f"ltdb{uuid.uuid4().hex[:8]}", f"ltd{uuid.uuid4().hex[:8]}"
    data = Path(tempfile.mkdtemp(prefix="lamina-pg-"))
    server = None
    try:
        _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _sh("ip", "link", "set", link, "master", bridge, "up")
        _sh("ip", "-n", ns, "addr", "add", f"{DB_ADDRESS}/24", "dev", "eth0")
        _sh("ip", "-n", ns, "link", "set", "eth0", "up")
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
        os.chown(data, *_postgres_ids())
        _sh("runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(data / "db"), "-U", "postgres",
            "--auth=trust")
        with open(data / "db" / "pg_hba.conf", "a") as fh:
            fh.write("host all all 0.0.0.0/0 trust\n")
        argv = ["ip", "netns", "exec", ns, "runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"),
                "-D", str(data / "db"), "-c", f"listen_addresses={DB_ADDRESS}", "-c", "port=5432", "-k", str(data)]
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not (data / ".s.PGSQL.5432").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        yield {"ec2": ec2, "vpc": vpc, "subnet": subnet, "sg": sg, "closed": closed}
    finally:
        if server is not None:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", link], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def _postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


def test_vpc_function_reaches_postgres_others_cannot(lambda_client, functions, psycopg_files, network) -> None:
    ec2 = network["ec2"]
    inside = functions(psycopg_files, MemorySize=256, Timeout=10,
                       VpcConfig={"SubnetIds": [network["subnet"]], "SecurityGroupIds": [network["sg"]]})
    eni = ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [network["subnet"]]}])
    [address] = [i["PrivateIpAddress"] for i in eni["NetworkInterfaces"]]
    got = invoke_ok(lambda_client, inside, {"host": DB_ADDRESS})
    assert got == {"ok": True, "client": address, "answer": 42}, got
    # Whatever the concurrency, the database sees the one interface address.
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: invoke_ok(lambda_client, inside, {"host": DB_ADDRESS}), range(16)))
    assert {r["client"] for r in results} == {address}, results
    # Without VpcConfig (the default outbound network), or with a group that allows only 443: no connection.
    outside = functions(psycopg_files, MemorySize=256, Timeout=10)
    assert not invoke_ok(lambda_client, outside, {"host": DB_ADDRESS, "timeout": 1})["ok"]
    closed = functions(psycopg_files, MemorySize=256, Timeout=10,
                       VpcConfig={"SubnetIds": [network["subnet"]], "SecurityGroupIds": [network["closed"]]})
    refused = invoke_ok(lambda_client, closed, {"host": DB_ADDRESS, "timeout": 1})
    assert not refused["ok"] and "timeout" in refused["error"].lower(), refused
    # A security group change applies to the running environment at once.
    ec2.authorize_security_group_egress(GroupId=network["closed"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "10.212.1.0/24"}]}])
    deadline = time.monotonic() + 5
    while not (now := invoke_ok(lambda_client, closed, {"host": DB_ADDRESS, "timeout": 1}))["ok"] \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert now["ok"] and now["client"] != address, now   # its own pair: another interface
