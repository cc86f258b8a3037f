"""The collection builds into a tarball that installs and documents every module it ships."""
import glob
import os
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
