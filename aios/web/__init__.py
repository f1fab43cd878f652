"""The dashboard: one asyncio event loop (standard library only) serving a JSON API,
Server-Sent Events and a plain-JavaScript single-page app (static/), run as the always
job web_server. Every request for data needs a credential (the home's token, or a
session made with it), on loopback too.

It talks to the daemon only through the control socket and reads job log files from
disk for the live tail. Modules: server (routes and start-up), http1 (the HTTP it
speaks, with its limits), client (the control protocol on the loop), api (the /api/
ops), security (token, sessions, CSRF, throttle), sse (the one shared watch connection
fanned out to every browser), logtail (following log files on one shared inotify
instance), metrics (/metrics). Imports from aios only control, config, home, errors,
logs, fswatch and spec.
"""
