"""BTDNet plugin for MMSegmentation. Install the whole stack with `make install` (see README)."""

from setuptools import find_packages, setup

setup(
    name='btdnet',
    version='0.1.0',
    description='BTDNet: referring remote sensing image segmentation for OpenMMLab',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    package_dir={'': 'projects'},
    packages=find_packages('projects'),
    # torch and mmcv (with compiled ops) come first from tools/install_env.sh; the rest is
    # requirements.txt. Listed here so that `pip check` sees what btdnet needs.
    install_requires=[
        'mmengine>=0.10.7,<0.11',
        'mmsegmentation==1.2.2',
        'mmpretrain==1.2.0',
        'transformers<4.52',
        'nltk>=3.9',
        'pycocotools',
        'rasterio>=1.4',
        'shapely>=2.1',
        'pyogrio>=0.7',
        'tqdm',
    ],
)
