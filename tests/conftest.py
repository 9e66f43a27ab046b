"""Keep test output readable: the library logs at debug, tests show warnings and up."""

from __future__ import annotations

import logging

import structlog

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
