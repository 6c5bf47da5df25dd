# A deployment as a user writes it, checked by `ctxbench run --target` (see README.md,
# "Checking a running deployment"). Start it by hand from this folder:
#
#   CTXBENCH_PROBE_SECRET=change-me gunicorn -c gunicorn.conf.py myapp:app
#
# ctxbench did not start it and does not know how it serves requests: it reads that back
# from what the probe reports.
bind = "127.0.0.1:8080"
workers = 2
worker_class = "gthread"
threads = 4
# install_probe() in myapp mounts the probe only when this is set; leave it out in production,
# or keep it with a CTXBENCH_PROBE_SECRET in the environment so only ctxbench can reach it.
raw_env = ["CTXBENCH_PROBE=1"]
accesslog = None
# gunicorn 27 opens a control socket at ~/.gunicorn/gunicorn.ctl by default: a second copy of
# this deployment (or any other gunicorn of this user) would take it over. Not needed here.
control_socket_disable = True
