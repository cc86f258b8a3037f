"""The collection builds into a tarball that installs and documents every module it ships."""
import glob
import os
import shutil
import subprocess
import tarfile

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _modules_in_tree():
    return sorted(os.path.splitext(os.path.basename(path))[0]
                  for path in glob.glob(os.path.join(COLLECTION_ROOT, 'plugins/modules/*.py'))
                  if not path.endswith('__init__.py'))


def test_build_install_and_document(tmp_path):
    build = subprocess.run(['ansible-galaxy', 'collection', 'build', '--output-path', str(tmp_path),
                            COLLECTION_ROOT], capture_output=True, text=True, check=True)
    tarballs = glob.glob(str(tmp_path / 'fediops-mastodon-*.tar.gz'))
    assert len(tarballs) == 1, build.stdout

    with tarfile.open(tarballs[0]) as tarball:
        names = tarball.getnames()
    assert 'galaxy.yml' not in names and 'MANIFEST.json' in names
    assert not [n for n in names if n.startswith(('tests/unit', 'tests/integration', 'tests/cluster',
                                                  'scripts/', '.ci', 'molecule/'))]

    install_root = tmp_path / 'installed'
    # Only the fresh install may be seen, not the copy the suite runs from.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(install_root))
    subprocess.run(['ansible-galaxy', 'collection', 'install', '-p', str(install_root),
                    tarballs[0]], capture_output=True, text=True, env=env, check=True)
    listed = subprocess.run(['ansible-galaxy', 'collection', 'list', '-p', str(install_root)],
                            capture_output=True, text=True, env=env, check=True).stdout
    assert 'fediops.mastodon' in listed

    documented = subprocess.run(['ansible-doc', '-l', 'fediops.mastodon', '--json'],
                                capture_output=True, text=True, env=env, check=True).stdout
    for module in _modules_in_tree():
        assert f'fediops.mastodon.{module}' in documented


def test_build_output_caches_and_local_state_stay_out_of_the_tarball(tmp_path):
    """`make docs` (build/docs), an earlier `make build` (build/*.tar.gz), the cluster tool's default state dir
    (.cluster), test output and caches beside the checkout: none of it goes into the tarball, which keeps its size."""
    checkout = tmp_path / 'checkout'
    shutil.copytree(COLLECTION_ROOT, checkout, ignore=shutil.ignore_patterns('.git', 'build', '.cluster', 'output'))

    def build(out):
        subprocess.run(['ansible-galaxy', 'collection', 'build', '--output-path', str(out), str(checkout)],
                       capture_output=True, text=True, check=True)
        path = glob.glob(str(out / 'fediops-mastodon-*.tar.gz'))[0]
        with tarfile.open(path) as tarball:
            return os.path.getsize(path), sorted(tarball.getnames())

    clean_size, clean_names = build(tmp_path / 'clean')
    litter = {
        'build/docs/build/html/index.html': 200000, 'build/docs/rst/index.rst': 1000,
        'build/docs-screenshots/index.png': 300000, 'build/fediops-mastodon-0.0.9.tar.gz': 150000,
        'build/ee-requirements.yml': 100, '.cluster/etcd-data/member/snap/db': 300000,
        'tests/output/junit/units.xml': 1000, 'plugins/module_utils/__pycache__/_kube.cpython-311.pyc': 20000,
        '.pytest_cache/v/cache/nodeids': 1000, 'molecule/default/.molecule/state.yml': 100,
    }
    for name, size in litter.items():
        path = checkout / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    size, names = build(tmp_path / 'littered')
    assert names == clean_names, sorted(set(names) ^ set(clean_names))
    assert abs(size - clean_size) < 2048, (clean_size, size)
    print('tarball: %d bytes, %d members' % (size, len(names)))
