"""IAM helpers shared by the constructs."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from constructs import IConstruct


def default_policy(role: iam.Role) -> IConstruct:
    """The inline policy that ``add_to_policy`` built on ``role``; depend on it, not on the role.

    A dependency on the role alone is implied by its ARN; what must exist first is the policy.
    """
    policy = role.node.try_find_child("DefaultPolicy")
    if policy is None:
        raise ValueError(f"{role.node.path} has no inline policy yet")
    return policy
