import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

MAX_K: int
HAS_GPU: bool

def volume(vectors: npt.ArrayLike) -> float: ...
def log_volume(vectors: npt.ArrayLike) -> float: ...
def volume_matrix(anchor: npt.ArrayLike, modalities: List[npt.ArrayLike], backend: str = "cpu") -> npt.NDArray[np.float32]: ...
def search(
    anchor: npt.ArrayLike, modalities: List[npt.ArrayLike], k: int, backend: str = "cpu"
) -> Tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32]]: ...
def search_index(
    anchor: npt.ArrayLike, index: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]], k: int, backend: str = "cpu"
) -> Tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32]]: ...
def search_index_approx(
    anchor: npt.ArrayLike,
    index: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
    k: int,
    probe: Optional[int] = None,
    low_w: Optional[int] = None,
    rerank: Optional[int] = None,
) -> Tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.bool_]]: ...
def merge_hits(
    indices: List[npt.NDArray[np.uint32]],
    volumes: List[npt.NDArray[np.float32]],
    k: int,
    bounds: List[Optional[npt.NDArray[np.float64]]],
) -> Tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.bool_]]: ...
def evaluate(
    anchor: npt.ArrayLike, modalities: List[npt.ArrayLike], ties: str = "pessimistic"
) -> Dict[str, Dict[str, float]]: ...
def loss(
    anchor: npt.ArrayLike, modalities: List[npt.ArrayLike], temperature: float = 0.07, label_smoothing: float = 0.1
) -> Dict[str, Any]: ...
def _pair_volumes(
    cross: npt.NDArray[np.float64], inner: npt.NDArray[np.float64], norms: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]: ...
def _pair_volume_grads(
    cross: npt.NDArray[np.float64],
    inner: npt.NDArray[np.float64],
    norms: npt.NDArray[np.float64],
    up: npt.NDArray[np.float64],
) -> Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
