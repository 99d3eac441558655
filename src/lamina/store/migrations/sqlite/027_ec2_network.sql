-- The EC2 subset (lamina/net/): VPCs, subnets, security groups and the shared (Lambda) network interfaces.
CREATE TABLE IF NOT EXISTS ec2_resources (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    doc TEXT NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now'))
);
CREATE INDEX IF NOT EXISTS ec2_resources_kind ON ec2_resources (kind);
