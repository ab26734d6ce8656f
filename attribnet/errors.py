"""Exception types. Each carries a one-line message meant for the user."""


class AttribnetError(Exception):
    """Base class: an error the command line prints as one line, without a traceback."""


class ConfigError(AttribnetError):
    """A recipe or command-line override that cannot be accepted."""


class DataError(AttribnetError):
    """A manifest, tree or cache that cannot be used."""


class VideoError(DataError):
    """A video or frame folder that cannot be decoded (corrupt, empty, too short, not video)."""


class NoFaceError(VideoError):
    """A video that decodes but shows no face in (enough of) its frames: noise, one colour,
    no face found. A VideoError, so that ``except VideoError`` catches every unusable video."""


class CheckpointError(AttribnetError):
    """A checkpoint that is missing, corrupt or from another architecture."""


class IndexMismatchError(AttribnetError):
    """A generator index built by another model than the one used to query it."""


class RunExistsError(ConfigError):
    """A run name whose folder already holds a run (refused without --resume/--overwrite)."""


class LockedError(AttribnetError):
    """A run folder or face cache that another live process is writing."""
