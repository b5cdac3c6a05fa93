from .bert_text_encoder import BertTextEncoder, tokenize_referring

__all__ = ['BertTextEncoder', 'tokenize_referring']
