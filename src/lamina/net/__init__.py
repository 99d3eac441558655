"""Networking (../shared/spec/networking.md): the VPC model behind the EC2 subset, one shared interface per
security-group-set:subnet pair (a namespace with one subnet address and SNAT), security groups as stateful nftables
rules, the default outbound network, and pools of pre-wired environment namespaces the sandbox joins."""
