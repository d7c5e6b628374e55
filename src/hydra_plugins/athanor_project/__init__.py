"""Hydra search-path plugin of athanor: the current folder's conf/ (and --config-dir) are searched
before athanor's own conf/, so a project's files add options and win on a name clash. The logic
lives in ``athanor.cli.project``; this module only hands Hydra the hook."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class AthanorProjectSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        try:
            from athanor.cli.project import prepend_project_dirs
        except ImportError:  # an athanor without project support earlier on sys.path
            return
        prepend_project_dirs(search_path)
