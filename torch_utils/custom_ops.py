"""Builds and loads the C++/CUDA extensions of torch_utils/ops, once per machine setup.

What it does, and why:
- One build per (sources, torch version, CUDA version, GPU architectures, compiler, Python):
  the hash of all of these names the build folder, so a changed setup never loads a stale
  binary, and an unchanged one never rebuilds. Later processes import the cached library
  directly, without compilers or ninja.
- Build folders live under $TORCH_EXTENSIONS_DIR, or else the dnnlib cache folder
  ($DNNLIB_CACHE_DIR or ~/.cache/dnnlib) in `torch_extensions/`.
- An OS file lock (fcntl) serialises builders: ranks that start together build once, and a
  killed builder cannot leave a stale lock behind.
- The CUDA toolkit is found even when `nvcc` on the PATH is a wrapper script (its parent
  folder then is not the toolkit), and headers that ship only in pip's `nvidia-*` packages
  (e.g. cusparse.h) are searched after the toolkit's own.
- A failed build raises BuildError with the cause and the fix; get_ops_plugin() turns it
  into ONE warning per cause, remembers the failure for the rest of the process, and the ops
  fall back to their reference paths. Other processes starting within FAILURE_TTL seconds
  reuse the failure instead of repeating a doomed build.

Environment variables:
  SG2_OPS_IMPL=ref         never use the kernels (no build is attempted).
  SG2_OPS_VERBOSE=1        show compiler output.
  CUDA_HOME / CUDA_PATH    the CUDA toolkit to use (must hold bin/nvcc and include/).
  TORCH_CUDA_ARCH_LIST     GPU architectures to build for; default: the visible GPUs', or
                           SG2_OPS_ARCH_LIST (default '9.0') on a machine without a GPU.
  TORCH_EXTENSIONS_DIR     where builds are cached.
"""

import contextlib
import glob
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import warnings

import torch

from dnnlib.util import make_cache_dir_path

OPS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ops')
FAILURE_TTL = 600  # seconds a recorded build failure is reused by other processes
DEFAULT_ARCH_LIST_WITHOUT_GPU = '9.0'

# The extensions of torch_utils/ops: binding (.cpp), kernels (.cu) and headers.
OPS_PLUGINS = {
    'bias_act': dict(sources=['bias_act_kernel.cpp', 'bias_act_kernel.cu'],
                     headers=['bias_act_kernel.h', 'kernel_common.h']),
    'upfirdn2d': dict(sources=['upfirdn2d_kernel.cpp', 'upfirdn2d_kernel.cu'],
                      headers=['upfirdn2d_kernel.h', 'kernel_common.h']),
}


class OpsBuildWarning(UserWarning):
    """Emitted once per cause when a kernel cannot be built and the reference path is used."""


class BuildError(RuntimeError):
    def __init__(self, cause, fix, log_path=None):
        self.cause, self.fix, self.log_path = cause, fix, log_path
        msg = f'{cause}. Fix: {fix}'
        if log_path:
            msg += f' Full build log: {log_path}'
        super().__init__(msg)


# ----------------------------------------------------------------------------
# Finding the toolchain.

def _toolkit_ok(root):
    if not root or not os.path.isfile(os.path.join(root, 'bin', 'nvcc')):
        return False
    return any(os.path.isfile(p) for p in [os.path.join(root, 'include', 'cuda_runtime.h')] +
               glob.glob(os.path.join(root, 'targets', '*', 'include', 'cuda_runtime.h')))


def _toolkit_from_wrapper(nvcc):
    """Toolkit root behind an nvcc that is a script (e.g. `exec /usr/local/cuda-13.0/bin/nvcc "$@"`)."""
    try:
        with open(nvcc, 'rb') as fh:
            head = fh.read(65536)
    except OSError:
        head = b''
    if head.startswith(b'#!'):
        for m in re.finditer(rb'(/[^\s\'"$]+)/bin/nvcc\b', head):
            root = os.path.realpath(m.group(1).decode(errors='replace'))
            if _toolkit_ok(root):
                return root
    # Any other wrapper: nvcc itself reports its root in a dry run.
    try:
        out = subprocess.run([nvcc, '-dryrun', '--version'], capture_output=True, text=True, timeout=60)
        m = re.search(r'^#\$ TOP=(.+)$', out.stdout + out.stderr, re.MULTILINE)
        if m and _toolkit_ok(os.path.realpath(m.group(1).strip())):
            return os.path.realpath(m.group(1).strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def find_cuda_home():
    """(toolkit root, how it was found); raises BuildError if there is none."""
    for var in ('CUDA_HOME', 'CUDA_PATH'):
        root = os.environ.get(var)
        if root:
            if not _toolkit_ok(root):
                raise BuildError(f'{var}={root} is not a CUDA toolkit (no bin/nvcc and include/cuda_runtime.h there)',
                                 f'point {var} at the toolkit folder that holds bin/nvcc, or unset it to let '
                                 f'torch_utils search PATH and /usr/local/cuda*')
            return os.path.realpath(root), f'${var}'
    nvcc = shutil.which('nvcc')
    if nvcc:
        root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if _toolkit_ok(root):
            return root, f'nvcc on PATH ({nvcc})'
        root = _toolkit_from_wrapper(nvcc)
        if root:
            return root, f'target of the nvcc wrapper {nvcc}'
    candidates = sorted(glob.glob('/usr/local/cuda-*'), reverse=True)
    major = (torch.version.cuda or '').split('.')[0]
    candidates.sort(key=lambda p: not os.path.basename(p).startswith(f'cuda-{major}.'))  # matching major first
    for root in ['/usr/local/cuda'] + candidates + ['/opt/cuda']:
        if _toolkit_ok(root):
            return os.path.realpath(root), f'found at {root}'
    raise BuildError('no CUDA toolkit found (CUDA_HOME is unset, no nvcc on PATH, nothing in /usr/local/cuda*)',
                     f'install the CUDA {torch.version.cuda} toolkit (conda install -c nvidia cuda-toolkit, or '
                     f'NVIDIA\'s installer) and set CUDA_HOME to it')


def nvcc_version(cuda_home):
    try:
        out = subprocess.run([os.path.join(cuda_home, 'bin', 'nvcc'), '--version'], capture_output=True, text=True,
                             timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise BuildError(f'cannot run {cuda_home}/bin/nvcc ({e})', 'check the CUDA toolkit installation') from e
    m = re.search(r'release (\d+)\.(\d+)', out)
    if not m:
        raise BuildError(f'{cuda_home}/bin/nvcc --version printed no release number', 'check the CUDA toolkit installation')
    return f'{m.group(1)}.{m.group(2)}'


def nvidia_pip_include_dirs():
    """Include folders of pip's nvidia-* packages (cusparse.h etc. may ship only there)."""
    roots = {os.path.dirname(os.path.dirname(torch.__file__))}
    roots.update(p for p in sys.path if p.endswith('site-packages'))
    return sorted({d for r in roots for d in glob.glob(os.path.join(r, 'nvidia', '*', 'include')) if os.path.isdir(d)})


def _compiler():
    cxx = os.environ.get('CXX', 'c++')
    path = shutil.which(cxx)
    if path is None:
        raise BuildError(f'C++ compiler {cxx!r} not found', 'install g++ (e.g. apt install g++) or set CXX to a C++17 compiler')
    try:
        version = subprocess.run([path, '--version'], capture_output=True, text=True, timeout=60).stdout.split('\n')[0]
    except (OSError, subprocess.SubprocessError):
        version = '?'
    return path, version


def _ninja_dir():
    """Folder to add to PATH so torch finds ninja (a venv's bin is not on PATH unless activated)."""
    if shutil.which('ninja'):
        return None
    for d in [os.path.dirname(sys.executable)]:
        if os.path.isfile(os.path.join(d, 'ninja')):
            return d
    try:
        import ninja  # pip's ninja package
        return ninja.BIN_DIR
    except (ImportError, AttributeError):
        raise BuildError('ninja not found', 'pip install ninja (torch builds extensions with it)') from None


def _arch_list():
    if os.environ.get('TORCH_CUDA_ARCH_LIST'):
        return os.environ['TORCH_CUDA_ARCH_LIST']
    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        return ';'.join(f'{a}.{b}' for a, b in caps)
    return os.environ.get('SG2_OPS_ARCH_LIST', DEFAULT_ARCH_LIST_WITHOUT_GPU)


def cache_root():
    if os.environ.get('TORCH_EXTENSIONS_DIR'):
        return os.environ['TORCH_EXTENSIONS_DIR']
    return make_cache_dir_path('torch_extensions')


# ----------------------------------------------------------------------------
# Building.

@contextlib.contextmanager
def _file_lock(path, what):
    try:
        import fcntl
    except ImportError:  # Windows: no cross-process lock; builds still land in keyed folders
        yield
        return
    with open(path, 'a+') as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            print(f'torch_utils: waiting for another process that is building {what}...', file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _patched_env(cuda_home, arch_list, ninja_dir):
    """Points torch.utils.cpp_extension at our toolkit and ninja for the duration of a build."""
    cpp_logger = logging.getLogger('torch.utils.cpp_extension')
    level = cpp_logger.level
    cpp_logger.setLevel(logging.ERROR)  # its import guesses a CUDA_HOME and logs it; we set our own
    try:
        import torch.utils.cpp_extension as cpp  # here, not at the top: a slow import that only a build needs
    finally:
        cpp_logger.setLevel(level)
    saved_env = {k: os.environ.get(k) for k in ('CUDA_HOME', 'TORCH_CUDA_ARCH_LIST', 'PATH')}
    saved_home = cpp.CUDA_HOME
    try:
        if cuda_home:
            os.environ['CUDA_HOME'] = cuda_home
            os.environ['TORCH_CUDA_ARCH_LIST'] = arch_list
            cpp.CUDA_HOME = cuda_home
        if ninja_dir:
            os.environ['PATH'] = ninja_dir + os.pathsep + os.environ.get('PATH', '')
        yield cpp
    finally:
        cpp.CUDA_HOME = saved_home
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _explain(log):
    """(cause, fix) from a compiler/linker log."""
    m = re.search(r'fatal error: ([^\s:]+): No such file or directory', log)
    if m:
        return (f'header {m.group(1)} not found',
                'install the package that ships it (the full CUDA toolkit, or pip install the matching nvidia-* '
                'package, e.g. nvidia-cusparse for cusparse.h), or add its folder to CPATH')
    m = re.search(r'cannot find -l(\S+)', log)
    if m:
        return (f'the linker cannot find library {m.group(1)}',
                'install it or add its folder to LIBRARY_PATH (for cudart: a complete CUDA toolkit in CUDA_HOME)')
    if re.search(r'unsupported (GNU|clang|Microsoft Visual Studio) version', log):
        return ('nvcc does not support this host compiler version',
                'install a compiler version your CUDA release supports and set CXX/CC to it')
    for line in log.splitlines():
        if re.search(r'\berror\b|fatal|undefined reference', line, re.IGNORECASE):
            return f'build failed: {line.strip()[:300]}', 'see the log; set SG2_OPS_VERBOSE=1 to watch the build'
    return 'build failed', 'see the log; set SG2_OPS_VERBOSE=1 to watch the build'


def _import_library(module_name, path):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hash_files(paths):
    h = hashlib.sha256()
    for p in paths:
        h.update(os.path.basename(p).encode())
        with open(p, 'rb') as fh:
            h.update(fh.read())
    return h.hexdigest()


def load_extension(name, sources, headers=(), with_cuda=True, extra_cflags=(), extra_cuda_cflags=(), force=False):
    """Builds (once) and imports a torch extension. Raises BuildError with cause and fix.

    name:      module name (also the build folder's prefix).
    sources:   .cpp / .cu files; headers: files they include (hashed, not compiled).
    with_cuda: compile .cu files with nvcc; False for CPU-only extensions.
    force:     ignore a recently recorded failure and try again.
    """
    if with_cuda and torch.version.cuda is None:
        raise BuildError(f'this PyTorch ({torch.__version__}) is a CPU-only build',
                         'install a CUDA build of PyTorch to use the CUDA kernels')
    cxx, cxx_version = _compiler()
    ninja_dir = _ninja_dir()
    cuda_home = arch_list = nvcc_ver = None
    extra_cflags, extra_cuda_cflags = ['-O3'] + list(extra_cflags), list(extra_cuda_cflags)
    if with_cuda:
        cuda_home, _ = find_cuda_home()
        nvcc_ver = nvcc_version(cuda_home)
        if nvcc_ver.split('.')[0] != torch.version.cuda.split('.')[0]:
            raise BuildError(f'nvcc in {cuda_home} is CUDA {nvcc_ver}, but PyTorch was built with CUDA {torch.version.cuda}',
                             f'install a CUDA {torch.version.cuda.split(".")[0]}.x toolkit and point CUDA_HOME at it')
        arch_list = _arch_list()
        extra_cuda_cflags = ['-O3'] + extra_cuda_cflags
        for d in nvidia_pip_include_dirs():  # searched after the toolkit's headers, never instead of them
            extra_cflags += ['-idirafter', d]
            extra_cuda_cflags += ['-Xcompiler', f'-idirafter,{d}']

    files = [os.path.abspath(p) for p in list(sources) + list(headers)]
    setup = [torch.__version__, torch.version.cuda, nvcc_ver, cuda_home, arch_list, cxx, cxx_version,
             sys.version_info[:2], sys.platform, extra_cflags, extra_cuda_cflags]
    key = hashlib.sha256((_hash_files(files) + repr(setup)).encode()).hexdigest()[:16]
    build_dir = os.path.join(cache_root(), f'{name}-{key}')
    os.makedirs(build_dir, exist_ok=True)

    if build_dir in _imported:
        return _imported[build_dir]
    with _file_lock(os.path.join(build_dir, 'sg2.lock'), name):
        module = _build_or_import(name, sources, with_cuda, extra_cflags, extra_cuda_cflags, cuda_home, arch_list,
                                  ninja_dir, build_dir, force)
    _imported[build_dir] = module
    return module


_imported = {}  # build folder -> module imported by this process


def _build_or_import(name, sources, with_cuda, extra_cflags, extra_cuda_cflags, cuda_home, arch_list, ninja_dir,
                     build_dir, force):
    """Under the build lock: import a finished build, reuse a recent failure, or build now."""
    done_path, failed_path = os.path.join(build_dir, 'built.json'), os.path.join(build_dir, 'failed.json')
    log_path = os.path.join(build_dir, 'build.log')
    if os.path.isfile(done_path):  # built before: import without compilers
        with open(done_path) as fh:
            done = json.load(fh)
        try:
            return _import_library(done['module'], done['file'])
        except Exception:
            os.remove(done_path)  # unusable (e.g. half-deleted cache): rebuild below
    if not force and os.path.isfile(failed_path):
        with open(failed_path) as fh:
            failed = json.load(fh)
        age = time.time() - failed['time']
        if age < FAILURE_TTL:
            raise BuildError(failed['cause'] + f' (recorded {age:.0f} s ago in {build_dir})', failed['fix'],
                             failed.get('log'))

    verbose = os.environ.get('SG2_OPS_VERBOSE', '') not in ('', '0')
    print(f'torch_utils: building the {name} extension once for this setup (can take a few minutes); '
          f'cache: {build_dir}', file=sys.stderr, flush=True)
    flag_sets = [extra_cuda_cflags]
    if with_cuda:  # some distributions ship a gcc newer than nvcc accepts
        flag_sets.append(extra_cuda_cflags + ['-allow-unsupported-compiler'])
    error = None
    for cuda_flags in flag_sets:
        try:
            with _patched_env(cuda_home, arch_list, ninja_dir) as cpp:
                module = cpp.load(name=name, sources=[os.path.abspath(p) for p in sources],
                                  extra_cflags=extra_cflags, extra_cuda_cflags=cuda_flags,
                                  build_directory=build_dir, with_cuda=with_cuda, verbose=verbose)
            error = None
            break
        except Exception as e:  # compiler, linker or import failure
            error = e
            log = str(e)
            with open(log_path, 'w') as fh:
                fh.write(log)
            if not re.search(r'unsupported (GNU|clang|Microsoft Visual Studio) version', log):
                break
    if error is not None:
        cause, fix = _explain(str(error))
        with open(failed_path, 'w') as fh:
            json.dump(dict(time=time.time(), cause=cause, fix=fix, log=log_path), fh)
        raise BuildError(cause, fix, log_path) from error
    with open(done_path, 'w') as fh:
        # The init symbol is named after the file (torch may have appended _v<N> to `name`).
        json.dump(dict(module=os.path.basename(module.__file__).split('.')[0], file=module.__file__), fh)
    if os.path.isfile(failed_path):
        os.remove(failed_path)
    return module


# ----------------------------------------------------------------------------
# The kernels of torch_utils/ops.

_loaded = {}     # name -> module
_failures = {}   # name -> BuildError; never retried within the process
_warned = set()  # causes already reported


def build_ops_plugin(name, force=False):
    """Builds and imports the CUDA extension of op `name` ('bias_act' or 'upfirdn2d'); raises BuildError."""
    spec = OPS_PLUGINS[name]
    return load_extension(f'sg2_{name}', [os.path.join(OPS_DIR, s) for s in spec['sources']],
                          [os.path.join(OPS_DIR, h) for h in spec['headers']], with_cuda=True, force=force)


def get_ops_plugin(name):
    """The CUDA extension of op `name`, or None (after one warning) if it cannot be built."""
    if name in _loaded:
        return _loaded[name]
    if name in _failures:
        return None
    try:
        _loaded[name] = build_ops_plugin(name)
        return _loaded[name]
    except BuildError as e:
        _failures[name] = e
        if e.cause not in _warned:
            _warned.add(e.cause)
            warnings.warn(f'torch_utils.ops: cannot build the CUDA kernels ({e.cause}); using the slower reference '
                          f'path for this process. Fix: {e.fix}' + (f' Build log: {e.log_path}.' if e.log_path else '') +
                          ' Set SG2_OPS_IMPL=ref to skip the kernels silently.', OpsBuildWarning, stacklevel=3)
        return None
