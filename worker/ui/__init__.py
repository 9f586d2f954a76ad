"""The dashboard, `/ui/…`: server-rendered pages for the people who run Thankly.

Every page works without JavaScript (there is none), under a Content Security Policy that
allows nothing but this origin's stylesheet and forms. `access.py` is who may see and do
what; `pages.py` renders; one module per page family holds its routes.
"""
