"""notify: tell someone how a job ended, as the job a hook names.

    [jobs.backup]
    ...
    on_failure = "notify"

    [jobs.notify]
    type = "trigger"
    program = "notify.py:main"
    kwargs = { url = "https://hooks.example.com/aios" }    # or mail_to = "ops@example.com"

A hook runs it with the facts of the run that ended: as arguments (job, outcome,
exit_code, run_id) and as AIOS_HOOK_JOB, AIOS_HOOK_OUTCOME, AIOS_HOOK_EXIT_CODE,
AIOS_HOOK_RUN_ID, AIOS_HOOK_KIND (on_failure or on_success) and AIOS_HOOK_WHY.

- `url`: POSTs the facts as one JSON object (Content-Type: application/json) with a
  `text` line for chat webhooks (Slack, Mattermost, Rocket.Chat take it as is), waiting
  at most `timeout` seconds (default 10); any HTTP status from 200 to 299 counts as sent.
- `mail_to`: hands a mail to the local sendmail (`sendmail -t -i`; `sendmail` names
  another binary), From: `mail_from` if given.

Exits 0 once sent, 1 with the reason on stderr when it could not be (the hook's run then
shows as failed, with the reason in its log). Standard library only.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

FACTS = ("kind", "job", "outcome", "exit_code", "run_id", "why")


def facts(job=None, outcome=None, exit_code=None, run_id=None):
    """What happened, from the arguments, else from the AIOS_HOOK_* variables."""
    given = {"job": job, "outcome": outcome, "exit_code": exit_code, "run_id": run_id}
    out = {}
    for key in FACTS:
        value = given.get(key)
        if value is None:
            value = os.environ.get(f"AIOS_HOOK_{key.upper()}") or None
        out[key] = int(value) if key in ("exit_code", "run_id") and str(value or "").lstrip("-").isdigit() else value
    out["device"] = os.environ.get("AIOS_DEVICE_ID") or socket.gethostname()
    out["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    out["text"] = summary(out)
    return out


def summary(info):
    """One line: "backup failed (exit 3) on lab-pc: failed after 2 attempts"."""
    code = f" (exit {info['exit_code']})" if info.get("exit_code") not in (None, 0) else ""
    why = f": {info['why']}" if info.get("why") else ""
    return f"{info.get('job') or '?'} {info.get('outcome') or 'ended'}{code} on {info['device']}{why}"


def post(url, info, timeout=10.0):
    body = json.dumps(info).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "aios-notify"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        if not 200 <= reply.status < 300:
            raise OSError(f"{url} answered HTTP {reply.status}")


def mail(to, info, sender=None, sendmail="sendmail"):
    headers = [f"To: {to}", f"Subject: [aios] {info['text'][:150]}", "Content-Type: text/plain; charset=utf-8"]
    if sender:
        headers.insert(0, f"From: {sender}")
    body = "\n".join(f"{key}: {info[key]}" for key in (*FACTS, "device", "time") if info.get(key) is not None)
    message = "\n".join(headers) + "\n\n" + body + "\n"
    done = subprocess.run([sendmail, "-t", "-i"], input=message.encode(), capture_output=True, timeout=60)
    if done.returncode != 0:
        raise OSError(f"{sendmail} exited {done.returncode}: {done.stderr.decode(errors='replace').strip()[:300]}")


def main(job=None, outcome=None, exit_code=None, run_id=None, url=None, mail_to=None, mail_from=None,
         sendmail="sendmail", timeout=10.0):
    if not url and not mail_to:
        print("notify: give url = \"https://...\" or mail_to = \"someone@example.com\" in the job's kwargs",
              file=sys.stderr)
        return 2
    info = facts(job, outcome, exit_code, run_id)
    try:
        if url:
            post(url, info, float(timeout))
        if mail_to:
            mail(mail_to, info, mail_from, sendmail)
    except (OSError, ValueError, urllib.error.URLError, subprocess.SubprocessError) as exc:
        print(f"notify: not sent: {exc}", file=sys.stderr)
        return 1
    print(f"notify: sent: {info['text']}")
    return 0
