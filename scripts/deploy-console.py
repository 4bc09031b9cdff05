#!/usr/bin/env python3
"""Uploads the web console (web/dist) to the stack's console bucket and writes
config.json beside it from the stack's outputs and parameters, then
invalidates the CloudFront distribution.

    make deploy                      # after sam deploy
    STACK=spendguard python3 scripts/deploy-console.py

Needs boto3 (the SAM CLI's virtualenv has it) and AWS credentials. The stack
name comes from $STACK, else from samconfig.toml (saved by sam deploy --guided).
"""
import json
import mimetypes
import os
import pathlib
import re
import sys
import time

import boto3

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIST = ROOT / "web" / "dist"


def stack_name() -> str:
    if os.environ.get("STACK"):
        return os.environ["STACK"]
    cfg = ROOT / "samconfig.toml"
    if cfg.exists():
        m = re.search(r'^stack_name\s*=\s*"([^"]+)"', cfg.read_text(), re.M)
        if m:
            return m.group(1)
    sys.exit("deploy-console: set STACK=<stack name> (no samconfig.toml with stack_name)")


def main() -> None:
    if not (DIST / "index.html").exists():
        sys.exit("deploy-console: web/dist missing: make web (needs Node.js)")
    name = stack_name()
    cfn = boto3.client("cloudformation")
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    out = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    config = {
        "issuer": out["JwtIssuer"],
        "client_id": out.get("ConsoleClientId", ""),
        "api_base_url": out["ApiUrl"],
        "scopes": "openid profile email",
        "quota_time_zone": params.get("TimeZone", "UTC"),
        "platforms": params.get("Platforms", "").split(),
    }
    if not config["client_id"]:
        print("deploy-console: ConsoleClientId is empty: sign-in needs it (sam deploy --parameter-overrides ConsoleClientId=...)")
    s3 = boto3.client("s3")
    bucket = out["ConsoleBucketName"]
    files = [p for p in DIST.rglob("*") if p.is_file() and p.name != ".built"]
    # Hashed assets first, the page last, so no page names an asset not yet there.
    files.sort(key=lambda p: p.name == "index.html")
    for path in files:
        key = path.relative_to(DIST).as_posix()
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        cache = "public, max-age=31536000, immutable" if key.startswith("assets/") else "no-cache"
        s3.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": ctype, "CacheControl": cache})
    s3.put_object(
        Bucket=bucket,
        Key="config.json",
        Body=json.dumps(config, indent=2).encode(),
        ContentType="application/json",
        CacheControl="no-cache",
    )
    boto3.client("cloudfront").create_invalidation(
        DistributionId=out["ConsoleDistributionId"],
        InvalidationBatch={
            "Paths": {"Quantity": 3, "Items": ["/index.html", "/config.json", "/"]},
            "CallerReference": str(time.time()),
        },
    )
    print(f"console: {out['ConsoleUrl']} ({len(files)} files, config.json: {json.dumps(config)})")


if __name__ == "__main__":
    main()
