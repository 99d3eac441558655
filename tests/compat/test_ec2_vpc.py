"""The EC2 subset with boto3's `ec2` client (query protocol), and VpcConfig on functions with boto3's `lambda`:
AWS's recorded validation messages and order, VpcConfigResponse, Pending while the shared interface is set up, one
interface per security-group-set:subnet pair shared by functions, detach and reclaim."""

from __future__ import annotations

import contextlib

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from helpers import ROLE, RUNTIME, make_zip, unique_name, wait_settled

CODE = {"app.py": "def handler(event, context):\n    return {'ok': True}\n"}


@pytest.fixture(scope="module")
def ec2(endpoint: str):
    return boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test", config=Config(retries={"max_attempts": 0}))


@pytest.fixture
def vpc(ec2):
    """A VPC with one /24 subnet and a security group; removed afterwards (with anything a test left in it)."""
    vpc_id = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.77.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]
    sg = ec2.create_security_group(GroupName=unique_name("app"), Description="app", VpcId=vpc_id)["GroupId"]
    yield {"vpc": vpc_id, "subnet": subnet["SubnetId"], "sg": sg}
    for group in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]:
        if group["GroupName"] != "default":
            ec2.delete_security_group(GroupId=group["GroupId"])
    for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=s["SubnetId"])
    ec2.delete_vpc(VpcId=vpc_id)


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    err = exc.value.response["Error"]
    return err["Code"], err["Message"]


def test_vpc_subnet_security_group_round_trip(ec2, vpc) -> None:
    got = ec2.describe_vpcs(VpcIds=[vpc["vpc"]])["Vpcs"]
    assert got[0]["CidrBlock"] == "10.77.0.0/16" and got[0]["State"] == "available"
    assert got[0]["VpcId"].startswith("vpc-")
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["vpc"]]}])["Subnets"]
    assert [(s["SubnetId"], s["CidrBlock"], s["AvailabilityZone"]) for s in subnets] == [
        (vpc["subnet"], "10.77.1.0/24", "us-east-1a")]
    assert subnets[0]["AvailableIpAddressCount"] == 251  # 256 - AWS's five reserved addresses
    groups = {g["GroupName"]: g for g in ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc["vpc"]]}])["SecurityGroups"]}
    assert set(groups) >= {"default"} and len(groups) == 2
    mine = ec2.describe_security_groups(GroupIds=[vpc["sg"]])["SecurityGroups"][0]
    assert mine["Description"] == "app" and mine["IpPermissions"] == []
    assert mine["IpPermissionsEgress"][0]["IpProtocol"] == "-1"
    assert mine["IpPermissionsEgress"][0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]


def test_rules_authorize_revoke(ec2, vpc) -> None:
    other = ec2.create_security_group(GroupName=unique_name("db"), Description="db", VpcId=vpc["vpc"])["GroupId"]
    resp = ec2.authorize_security_group_ingress(GroupId=other, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": vpc["sg"]}]},
        {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "10.77.0.0/16"}]}])
    assert resp["Return"] is True and len(resp["SecurityGroupRules"]) == 2
    assert resp["SecurityGroupRules"][0]["ReferencedGroupInfo"]["GroupId"] == vpc["sg"]
    perms = ec2.describe_security_groups(GroupIds=[other])["SecurityGroups"][0]["IpPermissions"]
    tcp = next(p for p in perms if p["IpProtocol"] == "tcp")
    assert (tcp["FromPort"], tcp["ToPort"], tcp["UserIdGroupPairs"][0]["GroupId"]) == (5432, 5432, vpc["sg"])
    with pytest.raises(ClientError) as exc:
        ec2.authorize_security_group_ingress(GroupId=other, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": vpc["sg"]}]}])
    assert _code(exc)[0] == "InvalidPermission.Duplicate"
    with pytest.raises(ClientError) as exc:
        ec2.authorize_security_group_egress(GroupId=other, IpPermissions=[
            {"IpProtocol": "tcp", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    assert _code(exc)[0] == "InvalidParameterValue"
    with pytest.raises(ClientError) as exc:
        ec2.authorize_security_group_egress(GroupId=other, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2,
             "UserIdGroupPairs": [{"GroupId": "sg-0000000000000000f"}]}])
    assert _code(exc) == ("InvalidGroup.NotFound", "The security group 'sg-0000000000000000f' does not exist")
    ec2.revoke_security_group_ingress(GroupId=other, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": vpc["sg"]}]}])
    perms = ec2.describe_security_groups(GroupIds=[other])["SecurityGroups"][0]["IpPermissions"]
    assert [p["IpProtocol"] for p in perms] == ["icmp"]
    with pytest.raises(ClientError) as exc:
        ec2.revoke_security_group_ingress(GroupId=other, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "1.2.3.4/32"}]}])
    assert _code(exc)[0] == "InvalidPermission.NotFound"


def test_ec2_errors(ec2, vpc) -> None:
    with pytest.raises(ClientError) as exc:
        ec2.describe_vpcs(VpcIds=["vpc-0123456789abcdef0"])
    assert _code(exc) == ("InvalidVpcID.NotFound", "The vpc ID 'vpc-0123456789abcdef0' does not exist")
    with pytest.raises(ClientError) as exc:
        ec2.create_subnet(VpcId=vpc["vpc"], CidrBlock="10.77.1.128/25")
    assert _code(exc) == ("InvalidSubnet.Conflict", "The CIDR '10.77.1.128/25' conflicts with another subnet")
    with pytest.raises(ClientError) as exc:
        ec2.create_subnet(VpcId=vpc["vpc"], CidrBlock="10.78.0.0/24")
    assert _code(exc)[0] == "InvalidSubnet.Range"
    with pytest.raises(ClientError) as exc:
        ec2.delete_vpc(VpcId=vpc["vpc"])
    assert _code(exc)[0] == "DependencyViolation"
    default = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc["vpc"]]},
                                                    {"Name": "group-name", "Values": ["default"]}])
    with pytest.raises(ClientError) as exc:
        ec2.delete_security_group(GroupId=default["SecurityGroups"][0]["GroupId"])
    assert _code(exc)[0] == "CannotDelete"
    with pytest.raises(ClientError) as exc:
        ec2.describe_subnets(SubnetIds=["subnet-0123456789abcdef0"])
    assert _code(exc) == ("InvalidSubnetID.NotFound", "The subnet ID 'subnet-0123456789abcdef0' does not exist")


def _create(lambda_client, name: str, **kwargs) -> dict:
    return lambda_client.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                                         Code={"ZipFile": make_zip(CODE)}, **kwargs)


def test_vpc_config_validation_messages(lambda_client, vpc) -> None:
    name = unique_name("vpcv")
    cases = [
        ({"SubnetIds": ["bad!"], "SecurityGroupIds": [vpc["sg"]]}, "ValidationException",
         "1 validation error detected: Value '[bad!]' at 'vpcConfig.subnetIds' failed to satisfy constraint: Member "
         "must satisfy constraint: [Member must have length less than or equal to 1024, Member must have length "
         "greater than or equal to 0, Member must satisfy regular expression pattern: subnet-[0-9a-z]*]"),
        ({"SubnetIds": [vpc["subnet"]], "SecurityGroupIds": ["sg_x"]}, "ValidationException",
         "1 validation error detected: Value '[sg_x]' at 'vpcConfig.securityGroupIds' failed to satisfy constraint: "
         "Member must satisfy constraint: [Member must have length less than or equal to 1024, Member must have "
         "length greater than or equal to 0, Member must satisfy regular expression pattern: sg-[0-9a-zA-Z]*]"),
        ({"SubnetIds": [vpc["subnet"]], "SecurityGroupIds": []}, "InvalidParameterValueException",
         "SubnetIds and SecurityIds must coexist or be both empty list."),
        # The security groups are looked up before the subnets.
        ({"SubnetIds": ["subnet-0123456789abcdef0"], "SecurityGroupIds": ["sg-0123456789abcdef0"]},
         "InvalidParameterValueException",
         "Error occurred while DescribeSecurityGroups. EC2 Error Code: InvalidGroup.NotFound. EC2 Error Message: "
         "The security group 'sg-0123456789abcdef0' does not exist"),
        ({"SubnetIds": ["subnet-0123456789abcdef0"], "SecurityGroupIds": [vpc["sg"]]},
         "InvalidParameterValueException",
         "Error occurred while DescribeSubnets. EC2 Error Code: InvalidSubnetID.NotFound. EC2 Error Message: "
         "The subnet ID 'subnet-0123456789abcdef0' does not exist"),
    ]
    for config, code, message in cases:
        with pytest.raises(ClientError) as exc:
            _create(lambda_client, name, VpcConfig=config)
        assert (exc.value.response["Error"]["Code"], exc.value.response["Error"]["Message"]) == (code, message)
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError):
        lambda_client.get_function(FunctionName=name)  # nothing was created


def _interfaces(ec2, **filters: str) -> list[dict]:
    flt = [{"Name": k.replace("_", "-"), "Values": [v]} for k, v in filters.items()]
    return ec2.describe_network_interfaces(Filters=flt)["NetworkInterfaces"]


def test_vpc_config_states_sharing_and_detach(lambda_client, ec2, vpc) -> None:
    first, second = unique_name("vpc1"), unique_name("vpc2")
    config = {"SubnetIds": [vpc["subnet"]], "SecurityGroupIds": [vpc["sg"]]}
    created = _create(lambda_client, first, VpcConfig=config)
    try:
        assert created["State"] == "Pending" and created["StateReasonCode"] == "Creating"
        assert created["VpcConfig"] == {**config, "VpcId": vpc["vpc"], "Ipv6AllowedForDualStack": False}
        lambda_client.get_waiter("function_active_v2").wait(FunctionName=first,
                                                            WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        got = lambda_client.get_function(FunctionName=first)["Configuration"]
        assert got["State"] == "Active" and got["VpcConfig"]["VpcId"] == vpc["vpc"]
        enis = _interfaces(ec2, subnet_id=vpc["subnet"], interface_type="lambda")
        assert len(enis) == 1
        eni = enis[0]
        assert eni["Description"].startswith(f"AWS Lambda VPC ENI-{first}-")
        assert eni["Groups"] == [{"GroupId": vpc["sg"], "GroupName": eni["Groups"][0]["GroupName"]}]
        assert eni["Attachment"]["AttachmentId"].startswith("ela-attach-")
        assert eni["Attachment"]["InstanceOwnerId"] == "amazon-aws" and eni["Status"] == "in-use"
        assert eni["PrivateIpAddress"] == "10.77.1.4"   # the first address past AWS's reserved ones
        # Terraform finds a function's interfaces this way.
        assert _interfaces(ec2, description=f"AWS Lambda VPC ENI-{first}-*", interface_type="lambda") == enis
        subnet = ec2.describe_subnets(SubnetIds=[vpc["subnet"]])["Subnets"][0]
        assert subnet["AvailableIpAddressCount"] == 250
        # A second function with the same pair shares the interface.
        _create(lambda_client, second, VpcConfig=config)
        wait_settled(lambda_client, second)
        assert [i["NetworkInterfaceId"] for i in _interfaces(ec2, subnet_id=vpc["subnet"])] == [
            eni["NetworkInterfaceId"]]
        # The group is in use: it cannot be deleted.
        with pytest.raises(ClientError) as exc:
            ec2.delete_security_group(GroupId=vpc["sg"])
        assert _code(exc)[0] == "DependencyViolation"
        # Detach: AWS's empty answer, InProgress with reason Creating while it happens.
        resp = lambda_client.update_function_configuration(FunctionName=first,
                                                           VpcConfig={"SubnetIds": [], "SecurityGroupIds": []})
        assert resp["VpcConfig"] == {"SubnetIds": [], "SecurityGroupIds": [], "VpcId": "",
                                     "Ipv6AllowedForDualStack": False}
        assert resp["LastUpdateStatus"] == "InProgress" and resp["LastUpdateStatusReasonCode"] == "Creating"
        lambda_client.get_waiter("function_updated_v2").wait(FunctionName=first,
                                                             WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        assert len(_interfaces(ec2, subnet_id=vpc["subnet"])) == 1   # still the second function's
        lambda_client.delete_function(FunctionName=second)
        assert _interfaces(ec2, subnet_id=vpc["subnet"]) == []       # reclaimed: nothing uses it
        # An update without VpcConfig keeps the current one; a function never given one has no VpcConfig key.
        plain = unique_name("novpc")
        assert "VpcConfig" not in _create(lambda_client, plain)
        lambda_client.delete_function(FunctionName=plain)
    finally:
        for name in (first, second):
            with contextlib.suppress(ClientError):
                lambda_client.delete_function(FunctionName=name)
