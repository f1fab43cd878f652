"""The dashboard: a threaded standard-library HTTP server with a JSON API, Server-Sent
Events and a plain-JavaScript single-page app (static/), run as the always job web_server.

It talks to the daemon only through the control socket (aios.control) and reads job log
files from disk for the live tail. Modules: server (HTTP and start-up), api (the /api/
ops), security (host, token, same-origin and CSRF rules), sse (the one shared watch
connection fanned out to every browser), logtail (following a log file).
Imports from aios only control, config, home and errors.
"""
